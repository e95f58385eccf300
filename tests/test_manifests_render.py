"""Rendering plain YAML, Kustomize (real kubectl) and Helm; the safe loader's limits."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import RenderError
from bot.manifests import AppSpec, RenderOptions, load_config, render_app, render_apps
from bot.manifests.loader import Limits, load_documents, load_file
from bot.manifests.render import kubectl_path

FIXTURES = Path(__file__).parent / "fixtures" / "repos"
BASIC = FIXTURES / "basic"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{k: v}}\n"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def refs(app: object) -> list[str]:
    return [str(m.ref) for m in app.manifests]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- plain YAML


def test_plain_app_recursive_sorted_with_provenance() -> None:
    web = render_app(BASIC, load_config(BASIC).app("web"))  # type: ignore[arg-type]
    assert web.renderer == "plain"
    assert web.errors == []
    assert refs(web) == [
        "Deployment web/web",
        "Service other/web",  # an explicit namespace wins over the app's
        "ConfigMap web/json-cm",
        "Secret web/web-credentials",
        "ConfigMap web/from-list-a",
        "ConfigMap web/from-list-b",
    ]
    sources = [(m.source.file, m.source.document, m.source.line) for m in web.manifests]
    assert sources == [
        ("apps/web/deployment.yaml", 0, 1),
        ("apps/web/deployment.yaml", 1, 17),
        ("apps/web/extra/config.json", 0, 1),
        ("apps/web/extra/secret.yaml", 0, 1),
        ("apps/web/list.yaml", 0, 4),
        ("apps/web/list.yaml", 0, 8),
    ]
    assert all(m.app == "web" for m in web.manifests)
    assert web.notes == ["skipped apps/web/extra/values.yaml (document 0): not a Kubernetes object"]
    assert "apps/web/list.yaml" in web.files
    assert web.reads("apps/web/README.md")  # the whole directory is an input
    assert not web.reads("apps/webby/x.yaml")


def test_namespaces_by_scope_and_crd() -> None:
    app = render_app(BASIC, load_config(BASIC).app("cluster"))  # type: ignore[arg-type]
    assert app.errors == []
    namespaces = {m.ref.kind: m.ref.namespace for m in app.manifests}
    assert namespaces == {
        "Namespace": None,  # cluster-scoped: its stray namespace is removed
        "ClusterRole": None,
        "CustomResourceDefinition": None,
        "Widget": None,  # the CRD in the same app says Cluster
        "Gadget": "default",  # unknown kinds count as namespaced; no app namespace
    }
    ns = next(m for m in app.manifests if m.ref.kind == "Namespace")
    assert "namespace" not in ns.obj["metadata"]


def test_skips_subapps_kustomize_configs_empty_docs_and_dotfiles(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/a.yaml": "---\n---\n" + CM.format(name="a") + "---\n- just\n- a list\n",
            "app/kustomize-config.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
            "app/.hidden.yaml": CM.format(name="hidden"),
            "app/sub/kustomization.yaml": "resources: []\n",
            "app/chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
            "app/chart/templates/x.yaml": "{{ broken",
            "app/tests/t.yaml": CM.format(name="excluded"),
        },
    )
    spec = AppSpec(name="app", path="app", exclude=("tests/*",))
    app = render_app(tmp_path, spec)
    assert app.errors == []
    assert refs(app) == ["ConfigMap default/a"]
    assert sorted(app.notes) == [
        "skipped app/a.yaml (document 2): not a Kubernetes object",
        "skipped app/chart/: it is a Helm chart (an app of its own)",
        "skipped app/kustomize-config.yaml: Kustomize configuration, not an object",
        "skipped app/sub/: it is a kustomization (an app of its own)",
    ]


def test_errors_are_collected_per_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/1-bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
            "app/2-good.yaml": CM.format(name="good"),
            "app/3-bad.json": '{"apiVersion": "v1",\n "kind": }',
        },
    )
    app = render_app(tmp_path, AppSpec(name="app", path="app"))
    assert refs(app) == ["ConfigMap default/good"]
    assert [(e.file, e.line) for e in app.errors] == [("app/1-bad.yaml", 5), ("app/3-bad.json", 2)]
    assert "invalid YAML" in app.errors[0].message
    assert "invalid JSON" in app.errors[1].message


def test_missing_app_path(tmp_path: Path) -> None:
    app = render_app(tmp_path, AppSpec(name="gone", path="nowhere"))
    assert [e.message for e in app.errors] == ["app path 'nowhere' does not exist at this commit"]


# --------------------------------------------------------------------------- safety


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_fails_fast() -> None:
    with pytest.raises(RenderError) as info:
        load_documents(BILLION_LAUGHS, name="bomb.yaml")
    assert "billion laughs" in info.value.message
    assert info.value.file == "bomb.yaml"
    assert info.value.line == 7  # the first line whose expansion passes the limit


def test_small_aliases_and_merge_keys_work() -> None:
    (doc,) = load_documents(
        "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n", name="f"
    )
    assert doc.data["use"] == {"x": 1, "y": 3}
    assert doc.data["list"] == [{"x": 1, "y": 2}] * 2


def test_alias_count_limit() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 20) + "]\n"
    with pytest.raises(RenderError, match="more than 10 YAML aliases"):
        load_documents(text, name="f", limits=Limits(max_aliases=10))


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(RenderError, match="recursive"):
        load_documents("&a [*a]\n", name="f")


def test_nesting_limit() -> None:
    with pytest.raises(RenderError, match="nesting deeper than 100"):
        load_documents("[" * 300 + "]" * 300, name="deep.yaml")
    with pytest.raises(RenderError, match="nesting deeper than 3"):
        load_documents("a:\n  b:\n    c:\n      d: 1\n", name="f", limits=Limits(max_depth=3))


def test_json_nesting_limit(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 500 + "]" * 500)
    with pytest.raises(RenderError, match="nesting"):
        load_file(tmp_path, "deep.json")


def test_file_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(RenderError, match="more than the limit of 1000 bytes"):
        load_file(tmp_path, "big.yaml", limits=Limits(max_file_bytes=1000))


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(RenderError) as info:
        load_documents("metadata:\n  name: a\n  name: b\n", name="f.yaml")
    assert info.value.line == 3
    assert "duplicate key 'name' (first on line 2)" in info.value.message


def test_timestamps_stay_strings_and_yaml11_types() -> None:
    (doc,) = load_documents(
        "d: 2024-01-01\nt: !!timestamp 2024-01-01\nb: yes\nn: ~\ni: 10\nf: 1.5\no: 0o17\n", name="f"
    )
    assert doc.data == {
        "d": "2024-01-01",
        "t": "2024-01-01",
        "b": True,
        "n": None,
        "i": 10,
        "f": 1.5,
        "o": "0o17",
    }


def test_unknown_tags_are_refused() -> None:
    with pytest.raises(RenderError, match="unsupported YAML tag"):
        load_documents("a: !!python/object:os.system x\n", name="f")


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(RenderError) as info:
        load_file(tmp_path, "latin.yaml")
    assert info.value.line == 2


def test_symlinks_escaping_the_checkout_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.yaml": CM.format(name="stolen")})
    repo = tmp_path / "repo"
    write(
        repo,
        {"app/ok.yaml": CM.format(name="ok"), "app/inside-target.yaml": CM.format(name="twin")},
    )
    (repo / "app" / "file-link.yaml").symlink_to(outside / "secret.yaml")
    (repo / "app" / "dir-link").symlink_to(outside)
    (repo / "app" / "inner-link.yaml").symlink_to("ok.yaml")  # inside: fine... but a duplicate
    (repo / "escape").symlink_to(outside)
    app = render_app(repo, AppSpec(name="app", path="app"))
    assert "ConfigMap default/stolen" not in refs(app)
    messages = sorted(e.message for e in app.errors)
    assert any("app/file-link.yaml is a symlink leading outside" in m for m in messages)
    assert any("app/dir-link is a symlink leading outside" in m for m in messages)
    assert any("declared twice" in m for m in messages)  # inner-link.yaml repeats ok.yaml
    escaped = render_app(repo, AppSpec(name="esc", path="escape"))
    assert refs(escaped) == []
    assert "outside the repository" in escaped.errors[0].message


# --------------------------------------------------------------------------- kustomize


def test_kubectl_is_the_venv_one() -> None:
    path = kubectl_path()
    assert path is not None
    assert Path(path).parent == Path(os.sys.executable).parent  # type: ignore[attr-defined]


def test_kustomize_app_with_bases_components_patches_generators() -> None:
    app = render_app(BASIC, load_config(BASIC).app("kz"))  # type: ignore[arg-type]
    assert app.renderer == "kustomize"
    assert app.errors == []
    assert refs(app) == ["ConfigMap kz/settings", "Deployment kz/api"]
    deployment = app.manifests[1].obj
    assert deployment["spec"]["replicas"] == 3  # the patch applied
    assert deployment["metadata"]["labels"] == {"team": "blue"}  # the component applied
    assert app.manifests[0].obj["data"] == {"app.properties": "color=blue\n"}
    assert {m.source.file for m in app.manifests} == {"apps/kz/kustomization.yaml"}
    assert app.files >= {
        "apps/kz/kustomization.yaml",
        "apps/kz/replicas-patch.yaml",
        "apps/kz/app.properties",
        "base/kustomization.yaml",
        "components/team/kustomization.yaml",
    }
    assert app.reads("base/deployment.yaml")


def test_kustomize_failure_shows_stderr(tmp_path: Path) -> None:
    write(tmp_path, {"app/kustomization.yaml": "resources: [missing.yaml]\n"})
    app = render_app(tmp_path, AppSpec(name="app", path="app"))
    (error,) = app.errors
    assert error.message.startswith("kustomize failed (exit 1): ")
    assert "missing.yaml" in error.message
    assert str(tmp_path) not in error.message  # temp paths are made repo-relative
    assert error.file == "app/kustomization.yaml"


@pytest.mark.parametrize(
    "entry",
    [
        "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0",
        "github.com/example/repo/deploy?ref=main",
        "github.com/example/repo//deploy",
        "gitlab.example.com:8443/group/repo.git",
        "git@github.com:example/repo.git",
    ],
)
def test_remote_bases_are_refused_unless_allowed(tmp_path: Path, entry: str) -> None:
    write(tmp_path, {"app/kustomization.yaml": f"resources:\n  - {entry}\n"})
    app = render_app(tmp_path, AppSpec(name="app", path="app"))
    (error,) = app.errors
    assert "remote kustomize base" in error.message
    assert "allowRemoteBases" in error.message
    assert error.file == "app/kustomization.yaml"


def test_kustomize_reference_outside_checkout_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"repo/app/kustomization.yaml": "resources: [../../outside]\n"})
    write(tmp_path, {"outside/kustomization.yaml": "resources: []\n"})
    app = render_app(tmp_path / "repo", AppSpec(name="app", path="app"))
    (error,) = app.errors
    assert "outside the repository" in error.message


# --------------------------------------------------------------------------- helm


def fake_helm(bin_dir: Path, script: str) -> None:
    """A stand-in ``helm`` (no real Helm here): records its argv, prints what a chart gives."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    helm = bin_dir / "helm"
    helm.write_text("#!/bin/sh\n" + script)
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)


HELM_OUTPUT = """\
echo "$@" > "$0.args"
env > "$0.env"
cat <<'EOF'
---
# Source: demo/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-cm
---
# Source: demo/templates/crb.yaml
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: demo
  namespace: demo-ns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
EOF
"""


def helm_config(values: str = "") -> str:
    return (
        "version: 1\napps:\n"
        "  - name: demo\n    path: charts/demo\n    namespace: web\n"
        f"    render:\n      helm:\n        namespace: demo-ns\n{values}"
        "  - name: web\n    path: apps/web\n"
    )


def test_helm_missing_fails_only_that_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASIC, repo)
    (repo / ".gitops.yaml").write_text(helm_config())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    demo, web = render_apps(repo, load_config(repo))
    assert demo.renderer == "helm"
    assert [e.message for e in demo.errors] == [
        "helm is not installed: install Helm 3 on the bot's PATH to render the chart in 'charts/demo'"
    ]
    assert web.errors == [] and len(web.manifests) == 6


HELM_HOOKS_OUTPUT = """\
cat <<'EOF'
---
# Source: demo/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-cm
---
# Source: demo/templates/tests/test-connection.yaml
apiVersion: v1
kind: Pod
metadata:
  name: demo-test-connection
  annotations:
    "helm.sh/hook": test
spec:
  containers: [{name: wget, image: busybox, command: [wget, demo:80]}]
  restartPolicy: Never
---
# Source: demo/templates/migrate.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: demo-migrate
  annotations:
    helm.sh/hook: pre-install, pre-upgrade
spec:
  template:
    spec:
      containers: [{name: migrate, image: demo:1}]
      restartPolicy: Never
EOF
"""


def test_helm_tests_are_left_out_and_other_hooks_said_to_deploy_as_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``helm template`` prints a chart's test Pods (``helm create`` scaffolds one): they are
    run by ``helm test``, never part of the release, so the bot deploys none. Other hooks are
    deployed as objects, and the report says so rather than letting a reader assume Helm's
    phases."""
    repo = tmp_path / "repo"
    shutil.copytree(BASIC, repo)
    (repo / ".gitops.yaml").write_text(helm_config())
    bin_dir = tmp_path / "bin"
    fake_helm(bin_dir, HELM_HOOKS_OUTPUT)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    demo = render_app(repo, load_config(repo).app("demo"))  # type: ignore[arg-type]
    assert demo.errors == []
    assert refs(demo) == ["ConfigMap demo-ns/demo-cm", "Job demo-ns/demo-migrate"]
    assert demo.notes == [
        "skipped charts/demo/templates/tests/test-connection.yaml: a Helm test hook (test), "
        "run by `helm test`, not part of the release",
        "charts/demo/templates/migrate.yaml is a Helm pre-install,pre-upgrade hook: deployed "
        "as an ordinary object, not run at that phase (gitops-bot does not run Helm hooks)",
    ]


def test_helm_template_arguments_and_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASIC, repo)
    write(repo, {"charts/values-prod.yaml": "replicas: 2\n"})
    (repo / ".gitops.yaml").write_text(
        helm_config("        valuesFiles: [../values-prod.yaml]\n        releaseName: rel\n")
    )
    bin_dir = tmp_path / "bin"
    fake_helm(bin_dir, HELM_OUTPUT)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("GITHUB_TOKEN", "must-not-leak")
    demo = render_app(repo, load_config(repo).app("demo"))  # type: ignore[arg-type]
    assert demo.errors == []
    args = (bin_dir / "helm.args").read_text().split()
    assert args[:2] == ["template", "rel"]
    assert args[2] == str(repo / "charts/demo")
    assert args[3:] == [
        "--namespace",
        "demo-ns",
        "--include-crds",
        "--values",
        str(repo / "charts/values-prod.yaml"),
    ]
    assert "must-not-leak" not in (bin_dir / "helm.env").read_text()
    assert refs(demo) == ["ConfigMap demo-ns/demo-cm", "ClusterRoleBinding demo"]
    assert [m.source.file for m in demo.manifests] == [
        "charts/demo/templates/cm.yaml",
        "charts/demo/templates/crb.yaml",
    ]
    assert "charts/values-prod.yaml" in demo.files


def test_subprocess_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    write(repo, {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"})
    bin_dir = tmp_path / "bin"
    # the sleeping grandchild holds stdout open: only killing the process group ends the wait
    fake_helm(bin_dir, "echo starting >&2\nsleep 30 &\nsleep 30\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    app = render_app(repo, AppSpec(name="c", path="chart", render=RenderOptions(timeout=0.5)))
    assert time.monotonic() - started < 20
    assert [e.message for e in app.errors] == ["helm did not finish within 0.5 s"]


def test_helm_failure_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    write(repo, {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"})
    bin_dir = tmp_path / "bin"
    fake_helm(bin_dir, "echo 'Error: template: c/templates/x.yaml:3: bad' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    app = render_app(repo, AppSpec(name="c", path="chart"))
    (error,) = app.errors
    assert error.message == "helm failed (exit 1): Error: template: c/templates/x.yaml:3: bad"
    assert error.file == "chart/Chart.yaml"


def test_render_apps_keeps_config_order_and_filters() -> None:
    config = load_config(BASIC)
    assert [r.spec.name for r in render_apps(BASIC, config)] == ["web", "cluster", "kz"]
    assert [r.spec.name for r in render_apps(BASIC, config, apps=["kz", "web"])] == ["web", "kz"]


def test_kustomize_environment_without_network(tmp_path: Path) -> None:
    from bot.manifests.render import NO_NETWORK_PROXY, _clean_env

    env = _clean_env(str(tmp_path), network=False)
    assert env["HTTPS_PROXY"] == env["https_proxy"] == NO_NETWORK_PROXY
    assert shutil.which("git", path=env["PATH"]) is None  # kustomize cannot clone
    assert env["HOME"] == str(tmp_path) and env["KUBECONFIG"] == os.devnull
    assert set(_clean_env(str(tmp_path))) <= set(env)
    assert not any("TOKEN" in key or "SECRET" in key for key in env)


def test_local_dirs_that_look_like_hosts_are_local(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/kustomization.yaml": "resources:\n  - v1.2/cm.yaml\n",
            "app/v1.2/cm.yaml": CM.format(name="versioned"),
        },
    )
    app = render_app(tmp_path, AppSpec(name="app", path="app"))
    assert app.errors == []
    assert refs(app) == ["ConfigMap default/versioned"]


def test_an_unexpected_failure_stays_in_its_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.manifests import render as render_module

    real = render_module._render_plain

    def explode(root: Path, spec: AppSpec, result: object, cache: object) -> object:
        if spec.name == "web":
            raise OSError("disk on fire")
        return real(root, spec, result, cache)  # type: ignore[arg-type]

    monkeypatch.setattr(render_module, "_render_plain", explode)
    web, cluster, kz = render_apps(BASIC, load_config(BASIC))
    assert web.manifests == []
    assert "internal error rendering this app (OSError: disk on fire)" in web.errors[0].message
    assert len(cluster.manifests) == 5 and cluster.errors == []
    assert len(kz.manifests) == 2


# Text PyYAML resolves exactly like our builder: YAML 1.1 scalars minus timestamps.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_keys = st.text(min_size=1, max_size=10)
_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)


@given(docs=st.lists(_data, min_size=1, max_size=3), flow=st.booleans())
@settings(max_examples=150, deadline=None)
def test_loader_agrees_with_pyyaml(docs: list[object], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow, sort_keys=False)
    expected = list(yaml.safe_load_all(text))
    assert [d.data for d in load_documents(text, name="x")] == expected


@pytest.mark.parametrize(
    ("app", "release"),
    [("web", "web"), ("My_App.v2", "my-app-v2"), ("_x_", "x"), ("a" * 70, "a" * 53)],
)
def test_default_helm_release_name(app: str, release: str) -> None:
    from bot.manifests.render import release_name

    assert release_name(app) == release


def test_expansion_limit_counts_the_whole_file() -> None:
    doc = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    assert len(load_documents(doc, name="f", limits=Limits(max_expanded_nodes=200))) == 1
    with pytest.raises(RenderError, match="expand to more than 200 nodes"):
        load_documents("---\n".join([doc] * 3), name="f", limits=Limits(max_expanded_nodes=200))


def test_rendered_output_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.manifests import render as render_module

    repo = tmp_path / "repo"
    write(repo, {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"})
    bin_dir = tmp_path / "bin"
    fake_helm(bin_dir, "head -c 5000 /dev/zero | tr '\\0' 'x'\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(render_module, "RENDERED_LIMITS", Limits(max_file_bytes=1000))
    app = render_app(repo, AppSpec(name="c", path="chart"))
    assert [e.message for e in app.errors] == [
        "helm printed 5000 bytes, more than the limit of 1000 bytes"
    ]


def test_helm_chart_symlink_out_of_the_checkout_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    write(repo, {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"})
    (repo / "chart" / "templates").mkdir()
    (repo / "chart" / "templates" / "leak.yaml").symlink_to("/etc/passwd")
    (repo / "chart" / "templates" / "ok.yaml").symlink_to("../Chart.yaml")  # inside: fine
    bin_dir = tmp_path / "bin"
    fake_helm(bin_dir, HELM_OUTPUT)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    app = render_app(repo, AppSpec(name="c", path="chart"))
    assert [e.file for e in app.errors] == ["chart/templates/leak.yaml"]
    assert not (bin_dir / "helm.args").exists()  # helm never ran


def test_helm_errors_quoting_a_values_file_are_scrubbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASIC, repo)
    write(repo, {"charts/values-prod.yaml": "db:\n  password: hunter2-from-values\n"})
    (repo / ".gitops.yaml").write_text(helm_config("        valuesFiles: [../values-prod.yaml]\n"))
    bin_dir = tmp_path / "bin"
    # what `{{ fail (printf "bad password %s" .Values.db.password) }}` makes helm print
    fake_helm(
        bin_dir, 'echo "Error: execution error: bad password hunter2-from-values" >&2\nexit 1\n'
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    demo = render_app(repo, load_config(repo).app("demo"))  # type: ignore[arg-type]
    (error,) = demo.errors
    assert "helm failed" in error.message and "bad password" in error.message
    assert "hunter2-from-values" not in error.message
