"""GitLab's side of the contract the fake GitLab is held to.

- ``gitlab_openapi.json``: the operations GitLab's OpenAPI v2 description covers (trimmed by
  ``trim_gitlab_openapi.py``);
- :data:`DOCUMENTED`: the operations it does not cover (or that were not located in it), written
  from their documentation pages, each named beside it; an operation in both is checked
  against the description;
- :class:`GitLabDialect`: how GitLab (Grape) refuses a request — ``400 {"error": "state does
  not have a valid value"}``, ``{"error": "title is missing"}``, ``404 {"error": "404 Not
  Found"}`` for an unknown route — and how it reads one (JSON or form bodies, URL-encoded
  project paths). GitLab ignores parameters it does not know; the fake answers the same but
  records them, since a misspelt parameter silently does nothing on GitLab.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.fake_forge.contract import Contract, ContractError, Dialect, form_body

SPEC_PATH = Path(__file__).with_name("gitlab_openapi.json")
DOCS = "https://docs.gitlab.com/api"


def operation_id(method: str, path: str) -> str:
    """GitLab's generated operation id: ``getApiV4ProjectsIdMergeRequestsMergeRequestIid``."""
    words = re.split(r"[/_{}]+", path)
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words if w)


def _param(
    name: str, where: str = "query", *, required: bool = False, **schema: Any
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or {"type": "string"}}


def _id() -> dict[str, Any]:
    return _param("id", "path", required=True, type="string")


def _int(name: str, where: str = "path") -> dict[str, Any]:
    return _param(name, where, required=where == "path", type="integer")


def _bool(name: str) -> dict[str, Any]:
    return _param(name, type="boolean")


def _enum(name: str, *values: str) -> dict[str, Any]:
    return _param(name, type="string", enum=list(values))


PAGE = [_int("page", "query"), _int("per_page", "query")]
SORT = _enum("sort", "asc", "desc")


def _body(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": bool(required),
        "schema": {"type": "object", "properties": properties, "required": required},
    }


STRING: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}


def _op(
    method: str, path: str, doc: str, params: list[dict[str, Any]], body: Any = None
) -> tuple[str, str, dict[str, Any]]:
    entry: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "parameters": params,
        "documentedAt": f"{DOCS}/{doc}",
    }
    if body is not None:
        entry["requestBody"] = body
    return path, method.lower(), entry


_MR = "/api/v4/projects/{id}/merge_requests/{merge_request_iid}"
_NOTES = "notes/#merge-requests"
_OPERATIONS = [
    _op("GET", "/api/v4/user", "users/#get-the-current-user", []),
    _op(
        "GET",
        "/api/v4/users",
        "users/#list-users",
        [
            _param("username"),
            _param("search"),
            _bool("active"),
            _bool("blocked"),
            _bool("humans"),
            _bool("exclude_internal"),
            _bool("without_project_bots"),
            _enum("order_by", "id", "name", "username", "created_at", "updated_at"),
            SORT,
            *PAGE,
        ],
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}",
        "projects/#get-a-single-project",
        [_id(), _bool("statistics"), _bool("license"), _bool("with_custom_attributes")],
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/repository/branches/{branch}",
        "branches/#get-single-repository-branch",
        [_id(), _param("branch", "path", required=True)],
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/merge_requests",
        "merge_requests/#list-project-merge-requests",
        [
            _id(),
            _enum("state", "opened", "closed", "locked", "merged", "all"),
            _enum(
                "order_by",
                "created_at",
                "updated_at",
                "merged_at",
                "title",
                "priority",
                "label_priority",
            ),
            SORT,
            _param("source_branch"),
            _param("target_branch"),
            _param("author_username"),
            _enum("scope", "created_by_me", "assigned_to_me", "all"),
            _enum("view", "simple"),
            _enum("wip", "yes", "no"),
            _param("created_after"),
            _param("updated_after"),
            _param("search"),
            *PAGE,
        ],
    ),
    _op(
        "GET",
        _MR,
        "merge_requests/#get-single-mr",
        [
            _id(),
            _int("merge_request_iid"),
            _bool("render_html"),
            _bool("include_diverged_commits_count"),
            _bool("include_rebase_in_progress"),
        ],
    ),
    _op(
        "GET",
        f"{_MR}/notes",
        f"{_NOTES}",
        [
            _id(),
            _int("merge_request_iid"),
            SORT,
            _enum("order_by", "created_at", "updated_at"),
            *PAGE,
        ],
    ),
    _op(
        "POST",
        f"{_MR}/notes",
        f"{_NOTES}",
        [_id(), _int("merge_request_iid")],
        _body(
            ["body"],
            body=STRING,
            created_at=STRING,
            internal=BOOL,
            merge_request_diff_head_sha=STRING,
        ),
    ),
    _op(
        "GET",
        f"{_MR}/notes/{{note_id}}",
        _NOTES,
        [_id(), _int("merge_request_iid"), _int("note_id")],
    ),
    _op(
        "PUT",
        f"{_MR}/notes/{{note_id}}",
        _NOTES,
        [_id(), _int("merge_request_iid"), _int("note_id")],
        _body([], body=STRING, confidential=BOOL),
    ),
    _op(
        "DELETE",
        f"{_MR}/notes/{{note_id}}",
        _NOTES,
        [_id(), _int("merge_request_iid"), _int("note_id")],
    ),
    _op(
        "GET",
        f"{_MR}/notes/{{note_id}}/award_emoji",
        "emoji_reactions/#list-emoji-reactions-on-comments",
        [_id(), _int("merge_request_iid"), _int("note_id"), *PAGE],
    ),
    _op(
        "POST",
        f"{_MR}/notes/{{note_id}}/award_emoji",
        "emoji_reactions/#add-an-emoji-reaction-to-a-comment",
        [_id(), _int("merge_request_iid"), _int("note_id")],
        _body(["name"], name=STRING),
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/repository/commits/{sha}/merge_requests",
        "commits/#list-merge-requests-associated-with-a-commit",
        [_id(), _param("sha", "path", required=True), _param("state"), *PAGE],
    ),
    _op(
        "POST",
        "/api/v4/projects/{id}/statuses/{sha}",
        "commits/#set-the-pipeline-status-of-a-commit",
        [_id(), _param("sha", "path", required=True)],
        _body(
            ["state"],
            state={
                "type": "string",
                "enum": ["pending", "running", "success", "failed", "canceled", "skipped"],
            },
            ref=STRING,
            name=STRING,
            context=STRING,
            target_url=STRING,
            description=STRING,
            coverage={"type": "number"},
            pipeline_id={"type": "integer"},
        ),
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/repository/commits/{sha}/statuses",
        "commits/#list-the-statuses-of-a-commit",
        [
            _id(),
            _param("sha", "path", required=True),
            _param("ref"),
            _param("name"),
            _bool("all"),
            *PAGE,
        ],
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/members/all/{user_id}",
        "members/#get-a-member-of-a-group-or-project-including-inherited-and-invited-members",
        [_id(), _int("user_id")],
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/issues",
        "issues/#list-project-issues",
        [
            _id(),
            _enum("state", "opened", "closed", "all"),
            _param("author_username"),
            _int("author_id", "query"),
            _enum(
                "order_by",
                "created_at",
                "updated_at",
                "priority",
                "due_date",
                "relative_position",
                "label_priority",
                "milestone_due",
                "popularity",
                "weight",
                "title",
            ),
            SORT,
            _param("labels"),
            _param("search"),
            _enum("scope", "created_by_me", "assigned_to_me", "all"),
            _bool("confidential"),
            *PAGE,
        ],
    ),
    _op(
        "POST",
        "/api/v4/projects/{id}/issues",
        "issues/#new-issue",
        [_id()],
        _body(
            ["title"],
            title=STRING,
            description=STRING,
            confidential=BOOL,
            labels=STRING,
            issue_type={"type": "string", "enum": ["issue", "incident", "test_case", "task"]},
        ),
    ),
    _op(
        "GET",
        "/api/v4/projects/{id}/issues/{issue_iid}",
        "issues/#single-project-issue",
        [_id(), _int("issue_iid")],
    ),
    _op(
        "PUT",
        "/api/v4/projects/{id}/issues/{issue_iid}",
        "issues/#edit-an-issue",
        [_id(), _int("issue_iid")],
        _body(
            [],
            title=STRING,
            description=STRING,
            state_event={"type": "string", "enum": ["close", "reopen"]},
            confidential=BOOL,
            labels=STRING,
            discussion_locked=BOOL,
        ),
    ),
    _op(
        "POST",
        "/api/v4/projects/{id}/issues/{issue_iid}/notes",
        "notes/#create-new-issue-note",
        [_id(), _int("issue_iid")],
        _body(["body"], body=STRING, created_at=STRING, internal=BOOL),
    ),
    # gitops-bot doctor: the token's own scopes and expiry
    _op(
        "GET",
        "/api/v4/personal_access_tokens/self",
        "personal_access_tokens/#get-details-on-a-personal-access-token",
        [],
    ),
]

#: Operations described by their documentation pages: ``path → method → operation``.
DOCUMENTED: dict[str, dict[str, Any]] = {}
for _path, _method, _entry in _OPERATIONS:
    DOCUMENTED.setdefault(_path, {})[_method] = _entry


class GitLabDialect(Dialect):
    """How GitLab's Grape API refuses requests."""

    decode_path_params = True
    record_unknown_params = True

    def error(self, status: int, message: str, detail: str = "") -> ContractError:
        return ContractError(status, {"error": message})

    def no_route(self, method: str, path: str) -> ContractError:
        return self.error(404, "404 Not Found")

    def wrong_method(self, method: str, path: str) -> ContractError:
        return self.error(405, "405 Method Not Allowed")

    def missing(self, where: str, name: str) -> ContractError:
        return self.error(400, f"{name} is missing")

    def invalid(self, where: str, name: str, validator: str, message: str) -> ContractError:
        if where == "path":
            # Routes declare their parameters' formats: a non-matching path is no route.
            return self.error(404, "404 Not Found")
        if validator == "enum":
            return self.error(400, f"{name} does not have a valid value")
        return self.error(400, f"{name} is invalid")

    def bad_json(self) -> ContractError:
        return self.error(400, "message body does not match declared format")

    def no_body(self) -> ContractError:
        raise AssertionError("GitLab reads a missing body as no parameters")

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        if content_type.startswith("application/x-www-form-urlencoded"):
            return form_body(raw)
        return super().parse_body(raw, content_type)


def gitlab_contract() -> Contract:
    """The contract of the operations the fake GitLab serves."""
    spec = json.loads(SPEC_PATH.read_text())
    documented = {
        path: {m: op for m, op in methods.items() if m not in spec["paths"].get(path, {})}
        for path, methods in DOCUMENTED.items()
    }
    return Contract(
        spec=spec,
        dialect=GitLabDialect(),
        documented={p: m for p, m in documented.items() if m},
        empty_body_is_params=True,
    )
