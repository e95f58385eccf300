"""`.gitops.yaml` parsing, its JSON Schema, error lines and app discovery."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from bot.errors import ConfigError
from bot.manifests import AppSpec, ConfigProblems, load_config, parse_config, schema
from bot.manifests.config import dependency_order
from bot.manifests.discover import discover_apps

HERE = Path(__file__).parent / "fixtures" / "repos"

ISSUE_EXAMPLE = """\
version: 1
apps:
  - name: guestbook        # required, unique in the repo
    path: apps/guestbook   # required, relative to the repo root
    target: production     # optional; when left out, the target named `default` in the bot's settings
    namespace: web         # optional; default namespace for namespaced objects without one
    prune: true            # optional, default true
"""


def problems_of(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    exc = info.value
    return exc.problems if isinstance(exc, ConfigProblems) else [exc]


def test_issue_example_parses_exactly() -> None:
    config = parse_config(ISSUE_EXAMPLE)
    assert config.version == 1
    assert config.source == ".gitops.yaml"
    (app,) = config.apps
    assert (app.name, app.path, app.target, app.namespace, app.prune) == (
        "guestbook",
        "apps/guestbook",
        "production",
        "web",
        True,
    )
    assert app.line == 3


def test_defaults() -> None:
    config = parse_config("version: 1\napps:\n  - {name: a, path: ./x/}\n")
    (app,) = config.apps
    assert app == AppSpec(name="a", path="x")
    assert app.target == "default"
    assert app.namespace is None
    assert app.prune is True
    assert app.validate_schema is False
    assert app.force_conflicts is False
    assert app.self_heal is False
    assert app.health_timeout == 300
    assert app.render.type == "auto"
    assert app.depends_on == ()


def test_all_options() -> None:
    config = parse_config(
        """\
version: 1
apps:
  - name: chart
    path: charts/demo
    validate: true
    forceConflicts: true
    selfHeal: true
    healthTimeout: 60
    exclude: ["tests/*"]
    render:
      type: helm
      timeout: 30
      kustomize: {allowRemoteBases: true}
      helm:
        releaseName: demo
        namespace: demo-ns
        valuesFiles: [values.yaml, ../shared/values-prod.yaml]
"""
    )
    (app,) = config.apps
    assert app.validate_schema and app.force_conflicts and app.self_heal
    assert app.health_timeout == 60
    assert app.exclude == ("tests/*",)
    assert app.render.type == "helm"
    assert app.render.timeout == 30
    assert app.render.allow_remote_bases is True
    assert app.render.helm_release == "demo"
    assert app.render.helm_namespace == "demo-ns"
    assert app.render.helm_values == ("values.yaml", "../shared/values-prod.yaml")


def test_schema_is_shipped_and_valid() -> None:
    text = resources.files("bot.manifests").joinpath("gitops.schema.json").read_text()
    assert json.loads(text) == schema()
    jsonschema.Draft202012Validator.check_schema(schema())


def test_unknown_key_names_line_and_suggests() -> None:
    (problem,) = problems_of("version: 1\napps:\n  - name: a\n    path: x\n    namepsace: web\n")
    assert problem.file == ".gitops.yaml"
    assert problem.line == 5
    assert "namepsace" in problem.message
    assert "did you mean 'namespace'" in problem.message


def test_unknown_top_level_key() -> None:
    (problem,) = problems_of("version: 1\napps: []\ndeploy_branch: main\n")
    assert problem.line == 3
    assert "allowed keys: version, apps" in problem.message


def test_deploy_branch_is_refused_saying_the_default_branch_deploys() -> None:
    (problem,) = problems_of("version: 1\ndeployBranch: release\napps: []\n")
    assert problem.line == 2
    assert problem.message == (
        "deployBranch is not supported: the deploy branch is the repository's default branch "
        "(pushes to it are deployed); remove the key, or change the default branch on the forge"
    )


DEPENDS = """\
version: 1
apps:
  - {name: db, path: db}
  - name: api
    path: api
    dependsOn: [db]
  - name: web
    path: web
    dependsOn: [api, db]
"""


def test_depends_on_is_read_and_orders_the_apps() -> None:
    config = parse_config(DEPENDS)
    assert [a.depends_on for a in config.apps] == [(), ("db",), ("api", "db")]
    assert dependency_order(config, ["web", "api", "db"]) == ["db", "api", "web"]
    assert dependency_order(config, ["web", "api"]) == ["api", "web"]


def test_a_dependency_cycle_is_an_error_at_the_line_closing_it() -> None:
    text = DEPENDS.replace("  - {name: db, path: db}", "  - {name: db, path: db, dependsOn: [web]}")
    (problem,) = problems_of(text)
    assert problem.line == 6  # api's dependsOn: [db] closes it
    assert problem.message.startswith("dependsOn cycle: db → web → api → db;")


def test_unknown_and_self_dependencies_name_their_lines() -> None:
    text = DEPENDS.replace("dependsOn: [db]", "dependsOn: [dbs, api]")
    found = sorted((p.line, p.message) for p in problems_of(text))
    assert found == [
        (6, "app 'api' depends on 'dbs', which is not an app of this file; did you mean 'db'?"),
        (6, "app 'api' depends on itself; remove it from its dependsOn"),
    ]
    (problem,) = problems_of(DEPENDS.replace("dependsOn: [db]", "dependsOn: db"))
    assert problem.line == 6 and "is not of type 'array'" in problem.message


def test_missing_required_and_wrong_types_each_get_a_line() -> None:
    found = problems_of(
        "version: 1\napps:\n  - name: a\n  - name: b\n    path: y\n    prune: 'yes'\n"
    )
    by_line = {p.line: p.message for p in found}
    assert "missing the required key 'path'" in by_line[3]
    assert "boolean" in by_line[6]
    assert str(found[0]).startswith(".gitops.yaml:3:")


def test_bad_version_and_invalid_name_have_hints() -> None:
    found = problems_of("version: 2\napps:\n  - name: 'My App'\n    path: x\n")
    messages = " ".join(p.message for p in found)
    assert "version: 1" in messages
    assert "'My App' is not allowed" in messages
    assert {p.line for p in found} == {1, 3}


def test_duplicate_names() -> None:
    (problem,) = problems_of(
        "version: 1\napps:\n  - {name: a, path: x}\n  - {name: b, path: y}\n  - {name: a, path: z}\n"
    )
    assert problem.line == 5
    assert "used twice" in problem.message and "line 3" in problem.message


@pytest.mark.parametrize(
    ("path", "needle"),
    [("/etc", "absolute"), ("../other", "'..'"), ("apps/../../x", "'..'"), ("C:\\x", "absolute")],
)
def test_paths_must_stay_inside(path: str, needle: str) -> None:
    (problem,) = problems_of(f"version: 1\napps:\n  - name: a\n    path: '{path}'\n")
    assert problem.line == 4
    assert needle in problem.message


def test_values_file_escaping_repo_is_refused() -> None:
    (problem,) = problems_of(
        "version: 1\napps:\n  - name: a\n    path: x\n    render:\n      helm:\n"
        "        valuesFiles: [../../secrets.yaml]\n"
    )
    assert problem.line == 7


def test_same_path_and_target_twice() -> None:
    (problem,) = problems_of(
        "version: 1\napps:\n  - {name: a, path: x}\n  - {name: b, path: x/}\n"
        "  - {name: c, path: x, target: other}\n"
    )
    assert problem.line == 4
    assert "both deploy" in problem.message


def test_invalid_yaml_names_line() -> None:
    (problem,) = problems_of("version: 1\napps:\n  - name: a\n   path: x\n")
    assert problem.line == 4
    assert "invalid YAML" in problem.message


def test_duplicate_yaml_key_is_an_error() -> None:
    (problem,) = problems_of("version: 1\napps: []\nversion: 1\n")
    assert problem.line == 3
    assert "duplicate key" in problem.message


def test_not_a_mapping() -> None:
    (problem,) = problems_of("- version: 1\n")
    assert "mapping" in problem.message


def test_load_config_reads_file(tmp_path: Path) -> None:
    (tmp_path / ".gitops.yaml").write_text(ISSUE_EXAMPLE)
    assert load_config(tmp_path).names == ["guestbook"]


def test_gitops_yml_gets_a_rename_hint(tmp_path: Path) -> None:
    (tmp_path / ".gitops.yml").write_text(ISSUE_EXAMPLE)
    with pytest.raises(ConfigError, match="rename"):
        load_config(tmp_path)


def test_config_symlink_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(ISSUE_EXAMPLE)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitops.yaml").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside"):
        load_config(repo)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"


def test_discovery_kustomize_roots(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [cm.yaml]\n",
            "base/cm.yaml": CM,
            "overlays/prod/kustomization.yaml": "resources: [../../base]\n",
            "overlays/staging/kustomization.yml": "resources: [../../base]\n",
            "tools/prod/kustomization.yaml": "resources: []\n",
            "deploy/plain.yaml": CM,  # plain manifests beside kustomizations are apps too
            ".hidden/kustomization.yaml": "resources: []\n",
        },
    )
    config = load_config(tmp_path)
    assert config.source == "discovered"
    assert [(a.name, a.path) for a in config.apps] == [
        ("deploy", "deploy"),
        ("overlays-prod", "overlays/prod"),
        ("staging", "overlays/staging"),
        ("tools-prod", "tools/prod"),
    ]
    assert all(a.target == "default" and a.prune for a in config.apps)


def test_discovery_charts(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
            "charts/web/charts/sub/Chart.yaml": "apiVersion: v2\nname: sub\nversion: 1.0.0\n",
        },
    )
    assert [(a.name, a.path) for a in discover_apps(tmp_path)] == [("web", "charts/web")]


def test_discovery_plain_dirs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "deploy/a/cm.yaml": CM,
            "deploy/b/nested/cm.yml": CM,
            "deploy/docs/README.md": "no yaml here",
            "k8s/cm.yaml": CM,
            "k8s/sub/cm.yaml": CM,
            "other/cm.yaml": CM,
            "ci/pipeline.yaml": "stages: [test]\n",  # YAML, but not a Kubernetes object
            "README.md": "docs",
        },
    )
    assert [(a.name, a.path) for a in discover_apps(tmp_path)] == [
        ("a", "deploy/a"),
        ("b", "deploy/b"),
        ("k8s", "k8s"),
        ("other", "other"),
    ]


def test_discovery_empty_repo(tmp_path: Path) -> None:
    assert load_config(tmp_path).apps == ()


def _property_names(node: object) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _property_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= _property_names(item)
    return names


def test_every_schema_key_is_documented() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "gitops-yaml.md").read_text()
    missing = sorted(
        name
        for name in _property_names(schema())
        if f"`{name}" not in docs and f".{name}`" not in docs
    )
    assert missing == []


def test_app_names_are_dns_labels_so_no_two_apps_share_an_applyset() -> None:
    """`team-app` and `Team_App` would both name the parent `gitops-bot.team-app`."""
    for bad in ("Team_App", "team.app", "-x", "x-"):
        with pytest.raises(ConfigError, match="name"):
            parse_config(f"version: 1\napps:\n  - name: {bad}\n    path: a\n")
    assert parse_config("version: 1\napps:\n  - name: team-app\n    path: a\n").names


def test_discovered_names_are_valid_and_unique(tmp_path: Path) -> None:
    for rel in ("deploy/My_App", "deploy/my-app", "deploy/other"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
        )
    names = [app.name for app in discover_apps(tmp_path)]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", n) for n in names), names
    assert "other" in names


def test_every_problem_of_the_file_comes_in_one_run(tmp_path: Path) -> None:
    """A schema error, a duplicate name and a missing path: one round, each with its line."""
    (tmp_path / "web").mkdir()
    (tmp_path / ".gitops.yaml").write_text(
        "version: 1\n"
        "apps:\n"
        "  - name: web\n"
        "    path: web\n"
        "    namepsace: web\n"  # 5: schema (unknown key)
        "  - name: web\n"  # 6: duplicate name
        "    path: web2\n"
        "  - name: api\n"
        "    path: services/api\n"  # 9: does not exist
        "    render: {helm: {valuesFiles: [missing.yaml]}}\n"  # 10: neither does this
    )
    with pytest.raises(ConfigProblems) as info:
        load_config(tmp_path)
    found = [(p.file, p.line, p.message) for p in info.value.problems]
    assert [(file, line) for file, line, _ in found] == [
        (".gitops.yaml", 5),
        (".gitops.yaml", 6),
        (".gitops.yaml", 9),
        (".gitops.yaml", 10),
    ]
    assert "did you mean 'namespace'" in found[0][2]
    assert "used twice" in found[1][2]
    assert found[2][2] == "app path 'services/api' does not exist at this commit"
    assert "'services/api/missing.yaml' does not exist" in found[3][2]


def test_a_missing_path_alone_fails_only_its_app_with_the_line(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "cm.yaml").write_text(CM)
    (tmp_path / ".gitops.yaml").write_text(
        "version: 1\napps:\n  - name: web\n    path: web\n  - name: gone\n    path: gone\n"
    )
    from bot.manifests import render_apps

    rendered = {r.spec.name: r for r in render_apps(tmp_path, load_config(tmp_path))}
    assert rendered["web"].errors == []
    (error,) = rendered["gone"].errors
    assert (error.file, error.line) == (".gitops.yaml", 6)
    assert error.message == "app path 'gone' does not exist at this commit"


def test_create_namespace_and_stuck_pod_timeout() -> None:
    (app,) = parse_config(
        "version: 1\napps:\n  - {name: a, path: x, namespace: web, createNamespace: true,"
        " stuckPodTimeout: 30}\n"
    ).apps
    assert app.create_namespace is True and app.stuck_pod_timeout == 30
    (default,) = parse_config("version: 1\napps:\n  - {name: a, path: x}\n").apps
    assert default.create_namespace is False and default.stuck_pod_timeout == 60
    (problem,) = problems_of(
        "version: 1\napps:\n  - name: a\n    path: x\n    createNamespace: true\n"
    )
    assert problem.line == 3
    assert problem.message == (
        "apps[0] is missing the required key 'namespace' (needed with createNamespace: true)"
    )
    (problem,) = problems_of("version: 1\napps:\n  - {name: a, path: x, stuckPodTimeout: 0}\n")
    assert "stuckPodTimeout" in problem.message


def test_hints_come_from_the_schema() -> None:
    """The fix a message gives is the one editors show: both read gitops.schema.json."""
    app = schema()["$defs"]["app"]["properties"]
    (problem,) = problems_of("version: 1\napps:\n  - name: Team_App\n    path: x\n")
    assert problem.message == (
        f"apps[0].name: 'Team_App' is not allowed ({app['name']['patternErrorMessage']})"
    )
    assert "'_'" not in problem.message  # the schema allows [a-z0-9-] only
    (problem,) = problems_of("version: 1\napps:\n  - {name: a, path: x, namespace: Web}\n")
    assert app["namespace"]["patternErrorMessage"] in problem.message


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_one_spelling_of_every_key_in_docs_and_messages() -> None:
    """`force_conflicts` in docs or messages while .gitops.yaml accepts only `forceConflicts`
    sends users to a key that does not exist."""
    from bot.cluster.phases import CONFLICT_HINT

    root = Path(__file__).parent.parent
    camel = sorted(n for n in _property_names(schema()) if _snake(n) != n)
    assert "forceConflicts" in camel and "healthTimeout" in camel
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text()
        wrong = [_snake(n) for n in camel if re.search(rf"\b{_snake(n)}\b", text)]
        assert wrong == [], f"{doc.name} spells {wrong}; .gitops.yaml spells them in camelCase"
    assert "forceConflicts: true" in CONFLICT_HINT and "force_conflicts" not in CONFLICT_HINT


def test_argocd_example_apps_layout_is_discovered() -> None:
    """Plain manifests in a top-level directory (`guestbook/`) are an app, beside the charts
    and kustomizations; a directory of other files (jsonnet) is not."""
    config = load_config(HERE / "argocd-example-apps")
    assert [(a.name, a.path) for a in config.apps] == [
        ("apps", "apps"),
        ("guestbook", "guestbook"),
        ("helm-guestbook", "helm-guestbook"),
        ("helm-hooks", "helm-hooks"),
        ("kustomize-guestbook", "kustomize-guestbook"),
    ]


def test_flux_style_layout_is_discovered() -> None:
    """Overlays are apps, their shared base is not; `clusters/<env>` hold plain manifests."""
    config = load_config(HERE / "flux-style")
    assert [(a.name, a.path) for a in config.apps] == [
        ("apps-production", "apps/production"),
        ("apps-staging", "apps/staging"),
        ("clusters-production", "clusters/production"),
        ("clusters-staging", "clusters/staging"),
    ]


def test_plain_discovery_leaves_what_charts_and_kustomizations_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "shared/cm.yaml": CM,  # a file a kustomization refers to
            "overlay/kustomization.yaml": "resources: [../shared/cm.yaml]\n",
            "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
            "charts/web/templates/cm.yaml": CM,
            "charts/README.yaml": "not: kubernetes\n",
            "envs/prod/cm.yaml": CM,
            "envs/prod/chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 1.0.0\n",
            "envs/prod/chart/templates/cm.yaml": CM,
            "envs/dev/chart/Chart.yaml": "apiVersion: v2\nname: d\nversion: 1.0.0\n",
            "envs/dev/chart/templates/cm.yaml": CM,
            "list.json": '{"apiVersion": "v1", "kind": "List", "items": []}',
        },
    )
    assert [a.path for a in discover_apps(tmp_path)] == [
        "charts/web",
        "envs/dev/chart",
        "envs/prod",
        "envs/prod/chart",
        "overlay",
    ]


def test_self_heal_must_be_a_boolean() -> None:
    found = problems_of("version: 1\napps:\n  - name: web\n    path: web\n    selfHeal: 'yes'\n")
    by_line = {p.line: p.message for p in found}
    assert "boolean" in by_line[5]
