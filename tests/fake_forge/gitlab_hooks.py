"""Webhook deliveries from the fake GitLab, as GitLab sends them: ``Merge Request Hook``,
``Note Hook`` and ``Push Hook`` payloads shaped like the real ones (the fixtures under
``tests/fixtures/webhooks/gitlab/`` were captured from GitLab; a test holds these to them),
with ``X-Gitlab-Token`` (the hook's secret token), ``X-Gitlab-Event``,
``X-Gitlab-Event-UUID`` and ``Idempotency-Key`` (kept across retries and "Resend request"),
posted within GitLab's default 10-second timeout.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.fake_forge.hooks import Delivery, post

if TYPE_CHECKING:
    from tests.fake_forge.gitlab import FakeGitLab, MergeRequest, Note, Project, User

#: GitLab's ``X-Gitlab-Event`` of each kind of hook, by the project hook setting enabling it.
EVENTS = {
    "merge_requests_events": "Merge Request Hook",
    "note_events": "Note Hook",
    "push_events": "Push Hook",
}
VISIBILITY_LEVEL = {"private": 0, "internal": 10, "public": 20}
MR_STATE_ID = {"opened": 1, "closed": 2, "merged": 3, "locked": 4}


@dataclass
class GitLabHook:
    """A project or group webhook (``scope``: a project path, a group path covering its
    projects and subgroups, or None for every project, as a system-wide test hook)."""

    url: str
    token: str
    scope: str | None = None
    events: tuple[str, ...] = ("merge_requests_events", "note_events", "push_events")

    def covers(self, project_path: str) -> bool:
        if self.scope is None:
            return True
        scope = self.scope.lower()
        path = project_path.lower()
        return path == scope or path.startswith(scope + "/")


def send(fake: FakeGitLab, hook: GitLabHook, delivery: Delivery) -> Delivery:
    body = json.dumps(delivery.payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"GitLab/{fake.version}",
        "X-Gitlab-Event": delivery.event,
        "X-Gitlab-Token": hook.token,
        "X-Gitlab-Instance": fake.url,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, hook.url)),
        "X-Gitlab-Event-UUID": delivery.id,
        "Idempotency-Key": delivery.id,
    }
    return post(hook.url, delivery, body, headers)


def hook_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def user_block(fake: FakeGitLab, user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "avatar_url": f"{fake.url}/uploads/-/system/user/avatar/{user.id}/avatar.png",
        "email": "[REDACTED]",
    }


def project_block(fake: FakeGitLab, project: Project) -> dict[str, Any]:
    web = f"{fake.url}/{project.path}"
    ssh = f"git@{fake.host}:{project.path}.git"
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "web_url": web,
        "avatar_url": None,
        "git_ssh_url": ssh,
        "git_http_url": f"{web}.git",
        "namespace": project.namespace_name,
        "visibility_level": VISIBILITY_LEVEL[project.visibility],
        "path_with_namespace": project.path,
        "default_branch": project.default_branch,
        "ci_config_path": None,
        "homepage": web,
        "url": ssh,
        "ssh_url": ssh,
        "http_url": f"{web}.git",
    }


def repository_block(fake: FakeGitLab, project: Project) -> dict[str, Any]:
    web = f"{fake.url}/{project.path}"
    return {
        "name": project.name,
        "url": f"git@{fake.host}:{project.path}.git",
        "description": project.description,
        "homepage": web,
    }


def commit_block(fake: FakeGitLab, project: Project, sha: str) -> dict[str, Any]:
    info = fake.commit_info(project, sha)
    return {
        "id": sha,
        "message": info["message"],
        "title": info["title"],
        "timestamp": info["committed_date"],
        "url": f"{fake.url}/{project.path}/-/commit/{sha}",
        "author": {"name": info["author_name"], "email": info["author_email"]},
    }


def mr_attributes(fake: FakeGitLab, mr: MergeRequest) -> dict[str, Any]:
    target = mr.project
    author = fake.users_by_id[mr.author_id]
    return {
        "id": mr.id,
        "iid": mr.iid,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "source_project_id": mr.source_project.id,
        "author_id": author.id,
        "assignee_ids": [],
        "assignee_id": None,
        "reviewer_ids": [],
        "title": mr.title,
        "created_at": hook_time(mr.created_at),
        "updated_at": hook_time(mr.updated_at),
        "last_edited_at": None,
        "last_edited_by_id": None,
        "milestone_id": None,
        "state_id": MR_STATE_ID[mr.state],
        "state": mr.state,
        "blocking_discussions_resolved": True,
        "work_in_progress": mr.draft,
        "draft": mr.draft,
        "first_contribution": False,
        "merge_status": "can_be_merged" if mr.test_merge_sha else "cannot_be_merged",
        "target_project_id": target.id,
        "description": mr.description,
        "prepared_at": hook_time(mr.created_at),
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": None,
        "human_time_change": None,
        "human_time_estimate": None,
        "url": f"{fake.url}/{target.path}/-/merge_requests/{mr.iid}",
        "source": project_block(fake, mr.source_project),
        "target": project_block(fake, target),
        "last_commit": commit_block(fake, target, mr.head_sha),
        "labels": [],
        "detailed_merge_status": "mergeable" if mr.test_merge_sha else "conflict",
    }


def merge_request_payload(
    fake: FakeGitLab,
    mr: MergeRequest,
    action: str,
    actor: User,
    *,
    oldrev: str | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    attributes = mr_attributes(fake, mr)
    attributes["action"] = action
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": user_block(fake, actor),
        "project": project_block(fake, mr.project),
        "repository": repository_block(fake, mr.project),
        "object_attributes": attributes,
        "labels": [],
        "changes": changes or {},
        "assignees": [],
        "reviewers": [],
    }


def note_payload(fake: FakeGitLab, note: Note) -> dict[str, Any]:
    project = fake.projects_by_id[note.project_id]
    author = fake.users_by_id[note.author_id]
    attributes: dict[str, Any] = {
        "id": note.id,
        "note": note.body,
        "noteable_type": note.noteable_type,
        "author_id": author.id,
        "created_at": hook_time(note.created_at),
        "updated_at": hook_time(note.updated_at),
        "project_id": project.id,
        "attachment": None,
        "line_code": None,
        "commit_id": "",
        "noteable_id": note.noteable_id,
        "system": note.system,
        "st_diff": None,
        "action": "create",
        "discussion_id": note.discussion_id,
    }
    payload: dict[str, Any] = {
        "object_kind": "note",
        "event_type": "note",
        "user": user_block(fake, author),
        "project_id": project.id,
        "project": project_block(fake, project),
        "repository": repository_block(fake, project),
        "object_attributes": attributes,
    }
    if note.noteable_type == "MergeRequest":
        mr = project.mrs[note.noteable_iid]
        attributes["url"] = f"{fake.url}/{project.path}/-/merge_requests/{mr.iid}#note_{note.id}"
        block = mr_attributes(fake, mr)
        for dropped in (
            "reviewer_ids",
            "first_contribution",
            "prepared_at",
            "total_time_spent",
            "time_change",
            "human_total_time_spent",
            "human_time_change",
            "human_time_estimate",
        ):
            block.pop(dropped)
        block["position"] = 0
        payload["merge_request"] = block
    else:
        issue = project.issues[note.noteable_iid]
        attributes["url"] = f"{fake.url}/{project.path}/-/issues/{issue.iid}#note_{note.id}"
        payload["issue"] = {
            "id": issue.id,
            "title": issue.title,
            "assignee_ids": [],
            "assignee_id": None,
            "author_id": issue.author_id,
            "project_id": project.id,
            "created_at": hook_time(issue.created_at),
            "updated_at": hook_time(issue.updated_at),
            "position": 0,
            "branch_name": None,
            "description": issue.description,
            "milestone_id": None,
            "state": issue.state,
            "iid": issue.iid,
            "labels": [],
        }
    return payload


def push_payload(
    fake: FakeGitLab,
    project: Project,
    *,
    ref: str,
    before: str,
    after: str,
    pusher: User,
    shas: list[str],
) -> dict[str, Any]:
    web = f"{fake.url}/{project.path}"
    commits = []
    for sha in shas[-20:]:  # GitLab lists at most 20 commits
        block = commit_block(fake, project, sha)
        block.update(fake.commit_files(project, sha))
        commits.append(block)
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref == f"refs/heads/{project.default_branch}",
        "checkout_sha": None if after == "0" * 40 else after,
        "message": None,
        "user_id": pusher.id,
        "user_name": pusher.name,
        "user_username": pusher.username,
        "user_email": "",
        "user_avatar": f"{fake.url}/uploads/-/system/user/avatar/{pusher.id}/avatar.png",
        "project_id": project.id,
        "project": project_block(fake, project),
        "commits": commits,
        "total_commits_count": len(shas),
        "push_options": {},
        "repository": {
            **repository_block(fake, project),
            "git_http_url": f"{web}.git",
            "git_ssh_url": f"git@{fake.host}:{project.path}.git",
            "visibility_level": VISIBILITY_LEVEL[project.visibility],
        },
    }
