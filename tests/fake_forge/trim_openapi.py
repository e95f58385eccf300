"""Regenerate ``github_openapi.json``: the operations of GitHub's REST API the fake serves.

Source: the npm package ``@octokit/openapi`` (GitHub's own OpenAPI description, published by
the Octokit team), file ``generated/api.github.com.deref.json`` (every ``$ref`` resolved).
Only what the fake checks is kept: per operation, its path and query parameters and its JSON
request body. OpenAPI 3.0's ``nullable`` becomes JSON Schema's ``"type": [..., "null"]`` and
prose (descriptions, examples) is dropped, so ``jsonschema`` validates requests directly.

Run at development time (the network is needed only for npm)::

    python -m tests.fake_forge.trim_openapi              # npm pack @octokit/openapi@VERSION
    python -m tests.fake_forge.trim_openapi --spec path/to/api.github.com.deref.json

Add an operation to ``OPERATIONS`` when the adapter starts using one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VERSION = "23.0.2"
OUT = Path(__file__).with_name("github_openapi.json")

OPERATIONS: dict[str, tuple[str, ...]] = {
    "/user": ("get",),
    "/app": ("get",),
    "/app/installations": ("get",),
    "/app/installations/{installation_id}/access_tokens": ("post",),
    "/app-manifests/{code}/conversions": ("post",),
    "/repos/{owner}/{repo}/installation": ("get",),
    "/installation/repositories": ("get",),
    "/repos/{owner}/{repo}": ("get",),
    "/repos/{owner}/{repo}/branches/{branch}": ("get",),
    "/repos/{owner}/{repo}/pulls": ("get",),
    "/repos/{owner}/{repo}/pulls/{pull_number}": ("get",),
    "/repos/{owner}/{repo}/issues/{issue_number}/comments": ("get", "post"),
    "/repos/{owner}/{repo}/issues/comments/{comment_id}": ("get", "patch", "delete"),
    "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": ("post",),
    "/repos/{owner}/{repo}/statuses/{sha}": ("post",),
    "/repos/{owner}/{repo}/commits/{ref}/statuses": ("get",),
    "/repos/{owner}/{repo}/collaborators/{username}/permission": ("get",),
    "/repos/{owner}/{repo}/commits/{commit_sha}/pulls": ("get",),
    "/repos/{owner}/{repo}/issues": ("get", "post"),
    "/repos/{owner}/{repo}/issues/{issue_number}": ("get", "patch"),
}

DROP = {
    "description",
    "example",
    "examples",
    "summary",
    "externalDocs",
    "readOnly",
    "writeOnly",
    "deprecated",
    "title",
    "discriminator",
    "xml",
}


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema object → JSON Schema (draft 2020-12), prose removed."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP or key.startswith("x-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = to_json_schema(value)
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "enum" in out:
            out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        for method in methods:
            op = spec["paths"][path][method]
            params = [
                {
                    "name": p["name"],
                    "in": p["in"],
                    "required": bool(p.get("required")),
                    "schema": to_json_schema(p.get("schema", {})),
                }
                for p in op.get("parameters", [])
                if p["in"] in ("path", "query")
            ]
            body = op.get("requestBody")
            entry: dict[str, Any] = {"operationId": op["operationId"], "parameters": params}
            if body:
                schema = body["content"]["application/json"]["schema"]
                entry["requestBody"] = {
                    "required": bool(body.get("required")),
                    "schema": to_json_schema(schema),
                }
            paths.setdefault(path, {})[method] = entry
    return {
        "source": f"npm @octokit/openapi@{VERSION} generated/api.github.com.deref.json",
        "openapi": spec["openapi"],
        "apiVersion": spec["info"]["version"],
        "paths": paths,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, help="api.github.com.deref.json (default: npm pack)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = args.spec
        if spec_path is None:
            subprocess.run(
                ["npm", "pack", f"@octokit/openapi@{VERSION}"],
                cwd=tmp,
                check=True,
                capture_output=True,
            )
            with tarfile.open(next(Path(tmp).glob("*.tgz"))) as archive:
                archive.extract("package/generated/api.github.com.deref.json", tmp, filter="data")
            spec_path = Path(tmp) / "package/generated/api.github.com.deref.json"
        spec = json.loads(spec_path.read_text())
    OUT.write_text(json.dumps(trim(spec), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
