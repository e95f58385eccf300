"""Tests for bot.report: snapshots of each format, the size limit, and escaping.

Rendered Markdown is checked with cmark-gfm (the renderer GitHub uses) when it is installed, so
the escaping tests look at what a reader would see, not at our own idea of Markdown."""

from __future__ import annotations

import base64
import html
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from bot.diff import object_diff, secret_values
from bot.model import (
    AppResult,
    Change,
    Health,
    Mode,
    Obj,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    ObjectRef,
    Origin,
    Restart,
    RunResult,
    Source,
)
from bot.report import (
    GITHUB_COMMENT_LIMIT,
    NO_APPS,
    comment_parts,
    escape_md,
    fence,
    marker_for,
    render,
    render_json,
    render_markdown,
    render_text,
    short_ref,
)

BASE = "0123456789abcdef0123456789abcdef01234567"
HEAD = "fedcba9876543210fedcba9876543210fedcba98"


class MarkdownSnapshot(SingleFileSnapshotExtension):
    """Snapshots stored as readable .md files."""

    _write_mode = WriteMode.TEXT
    file_extension = "md"


class TextSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "txt"


@pytest.fixture
def md_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(MarkdownSnapshot)


@pytest.fixture
def text_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(TextSnapshot)


def gfm_html(markdown: str) -> str:
    """The HTML GitHub's renderer makes of ``markdown`` (before GitHub's sanitizer runs)."""
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from cmarkgfm.cmark import Options  # type: ignore[import-untyped]

    html: str = cmarkgfm.github_flavored_markdown_to_html(
        markdown, options=Options.CMARK_OPT_UNSAFE
    )
    return html


# -- a realistic result -------------------------------------------------------------------------


def deployment(name: str, image: str, replicas: int = 2) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "guestbook", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def change(
    old: Obj | None, new: Obj | None, kind: Change, file: str, line: int | None = 1
) -> ObjectChange:
    obj = new if new is not None else old
    assert obj is not None
    ref = ObjectRef.of(obj)
    return ObjectChange(
        ref=ref,
        change=kind,
        diff=object_diff(old, new, ref=ref),
        source=Source(file=file, line=line),
    )


SECRET_OLD: Obj = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "redis-auth", "namespace": "guestbook"},
    "data": {"password": base64.b64encode(b"correct horse battery").decode()},
}
SECRET_NEW: Obj = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "redis-auth", "namespace": "guestbook"},
    "stringData": {"password": "Tr0ub4dor&3", "username": "guestbook-app"},
}


def realistic(mode: Mode = Mode.LIVE) -> RunResult:
    web_old = deployment("frontend", "gcr.io/google-samples/gb-frontend:v4")
    web_new = deployment("frontend", "gcr.io/google-samples/gb-frontend:v5", replicas=3)
    redis = deployment("redis-leader", "docker.io/redis:6.0.5", replicas=1)
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "redis-follower", "namespace": "guestbook"},
        "spec": {"ports": [{"port": 6379}], "selector": {"app": "redis-follower"}},
    }
    guestbook = AppResult(
        name="guestbook",
        target="production",
        commit=HEAD,
        changes=[
            change(None, redis, Change.CREATE, "apps/guestbook/redis-leader.yaml", 1),
            change(web_old, web_new, Change.UPDATE, "apps/guestbook/frontend.yaml", 1),
            change(SECRET_OLD, SECRET_NEW, Change.UPDATE, "apps/guestbook/secret.yaml", 4),
            change(service, None, Change.DELETE, "apps/guestbook/redis-follower.yaml", 1),
            ObjectChange(
                ref=ObjectRef("v1", "ConfigMap", "guestbook", "settings"),
                change=Change.UNCHANGED,
                source=Source("apps/guestbook/config.yaml", line=1),
            ),
        ],
        errors=[
            ObjectError(
                message=(
                    'Deployment.apps "redis-leader" is invalid: '
                    "spec.template.spec.containers[0].image: Required value"
                ),
                ref=ObjectRef("apps/v1", "Deployment", "guestbook", "redis-leader"),
                file="apps/guestbook/redis-leader.yaml",
                line=1,
                reason="Invalid",
            ),
        ],
        health=[
            ObjectHealth(
                ref=ObjectRef("apps/v1", "Deployment", "guestbook", "frontend"),
                health=Health.HEALTHY,
            ),
            ObjectHealth(
                ref=ObjectRef("apps/v1", "Deployment", "guestbook", "redis-leader"),
                health=Health.DEGRADED,
                reason="ProgressDeadlineExceeded",
                message='ReplicaSet "redis-leader-5d8f" has timed out progressing.',
            ),
        ],
        notes=["skipped apps/guestbook/values.yaml: not a Kubernetes object"],
    )
    monitoring = AppResult(
        name="monitoring",
        target="staging",
        commit=HEAD,
        changes=[
            ObjectChange(
                ref=ObjectRef("v1", "ConfigMap", "monitoring", "prometheus"),
                change=Change.UNCHANGED,
                source=Source("apps/monitoring/prometheus.yaml"),
            )
        ],
        errors=[
            ObjectError(
                message="connection refused: cluster staging is unreachable",
                transient=True,
            )
        ],
    )
    return RunResult(mode=mode, apps=[guestbook, monitoring], base=BASE, head=HEAD)


# -- snapshots ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_markdown_snapshot(mode: Mode, md_snapshot: SnapshotAssertion) -> None:
    assert render_markdown(realistic(mode)) == md_snapshot


def test_text_snapshot(text_snapshot: SnapshotAssertion) -> None:
    assert render_text(realistic()) == text_snapshot


def test_text_color_snapshot(text_snapshot: SnapshotAssertion) -> None:
    assert render_text(realistic(), color=True) == text_snapshot


def test_empty_results_snapshot(md_snapshot: SnapshotAssertion) -> None:
    nothing = RunResult(mode=Mode.OFFLINE, base=BASE, head=HEAD)
    unchanged = RunResult(
        mode=Mode.OFFLINE,
        base=BASE,
        head=HEAD,
        apps=[AppResult(name="guestbook", target="default")],
    )
    assert render_markdown(nothing) + "\n\n" + render_markdown(unchanged) == md_snapshot


# -- structure ----------------------------------------------------------------------------------


def test_markdown_layout() -> None:
    text = render_markdown(realistic())
    assert text.startswith("<!-- gitops-bot:preview -->\n### GitOps preview")
    assert "<code>0123456..fedcba9</code>" in text
    positions = [
        text.index("| App | Target |"),
        text.index("#### Errors in guestbook"),
        text.index("<details>"),
    ]
    assert positions == sorted(positions), "summary, then errors, then diffs"
    row = next(line for line in text.splitlines() if "guestbook | production" in line)
    assert row.split("|")[3:9] == [
        " 1 ",
        " 2 ",
        " 1 ",
        " 1 ",
        " 1 ",
        " ✅ 1 healthy, ❌ 1 degraded ",
    ]
    assert "apps/guestbook/redis-leader.yaml:1" in text
    assert text.count("<details>") == 4 == text.count("</details>")


def test_markdown_renders_as_expected_on_github() -> None:
    html = gfm_html(render_markdown(realistic()))
    assert html.count("<table>") == 1
    assert html.count('<pre lang="diff">') == 4
    assert html.count("<details>") == 4


def test_marker_title_and_command_overrides() -> None:
    result = realistic(Mode.DEPLOY)
    assert render_markdown(result).startswith(marker_for(Mode.DEPLOY) + "\n")
    assert marker_for(Mode.DRIFT) == "<!-- gitops-bot:drift -->"
    custom = render_markdown(result, marker="<!-- x -->", title="Deploy of <b>main</b>")
    assert custom.startswith("<!-- x -->\n### Deploy of &lt;b&gt;main&lt;/b&gt;")
    assert not render_markdown(result, marker="").startswith("<!--")


def test_short_ref() -> None:
    assert short_ref(BASE) == "0123456"
    assert short_ref("main") == "main"
    assert short_ref(None) == "?"


def test_json_is_the_model_shape() -> None:
    result = realistic()
    data = json.loads(render_json(result))
    assert data == {"title": "GitOps preview 0123456..fedcba9 (live)", **result.to_json()}
    assert json.loads(render(result, fmt="json")) == data
    app = data["apps"][0]
    assert {"name", "target", "created", "updated", "deleted", "unchanged", "errors"} <= set(app)
    assert app["created"][0] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "guestbook",
        "name": "redis-leader",
        "change": "created",
        "diff": app["created"][0]["diff"],
        "source": {"file": "apps/guestbook/redis-leader.yaml", "document": 0, "line": 1},
        "origin": None,
        "prDiff": "",
        "driftDiff": "",
    }


# The JSON shape before drift, restarts, dry runs and unowned files were added: every key and
# value of it must stay as it was (scripts parse it); new keys are only ever added.
V1_RUN_KEYS = {"mode", "base", "head", "apps", "errors"}
V1_APP_KEYS = {
    "name", "target", "commit", "created", "updated", "deleted", "unchanged", "errors",
    "health", "notes",
}  # fmt: skip
V1_OBJECT_KEYS = {"apiVersion", "kind", "namespace", "name", "change", "diff", "source"}


def test_json_shape_only_grows() -> None:
    result = classified_result()
    data = result.to_json()
    assert set(data) == V1_RUN_KEYS | {"dryRun", "unownedFiles"}
    for app in data["apps"]:
        assert set(app) == V1_APP_KEYS | {"restarts"}
        for kind in ("created", "updated", "deleted", "unchanged"):
            for obj in app[kind]:
                assert set(obj) == V1_OBJECT_KEYS | {"origin", "prDiff", "driftDiff"}
    # the new fields of an unclassified result are empty, never missing
    plain = realistic().to_json()
    assert plain["dryRun"] is False and plain["unownedFiles"] == []
    assert all(app["restarts"] == [] for app in plain["apps"])


def test_render_dispatch() -> None:
    result = realistic()
    assert render(result, fmt="markdown") == render_markdown(result)
    assert render(result, fmt="text") == render_text(result)
    with pytest.raises(ValueError, match="unknown report format"):
        render(result, fmt="html")  # type: ignore[arg-type]


def test_text_without_diffs_is_one_line_per_object() -> None:
    text = render_text(realistic(), diffs=False)
    assert "  + Deployment guestbook/redis-leader  (apps/guestbook/redis-leader.yaml:1)" in text
    assert "  ~ Secret guestbook/redis-auth  (apps/guestbook/secret.yaml:4)" in text
    assert "  - Service guestbook/redis-follower  (apps/guestbook/redis-follower.yaml:1)" in text
    assert "settings" not in text  # unchanged objects are only counted
    assert "@@" not in text


def test_unhealthy_objects_are_listed_with_their_reason() -> None:
    text = render_markdown(realistic(Mode.DEPLOY))
    section = text.split("#### Not healthy in guestbook → production")[1].split("####")[0]
    assert (
        "<code>Deployment guestbook/redis-leader</code> degraded: **ProgressDeadlineExceeded**"
        in section
    )
    assert "frontend" not in section  # healthy objects are only counted


@pytest.mark.parametrize(
    ("mode", "kubeconfig"),
    [(Mode.OFFLINE, False), (Mode.LIVE, True), (Mode.DEPLOY, True), (Mode.DRIFT, True)],
)
def test_omission_footer_names_a_command_for_the_mode(mode: Mode, kubeconfig: bool) -> None:
    result = big_result(apps=1, per_app=30, lines=50)
    result.mode = mode
    text = render_markdown(result, max_chars=8_000)
    command = re.search(r"```sh\n(.*)\n```", text)
    assert command is not None
    assert command.group(1).startswith(f"gitops-bot preview --repo . --base {BASE} --head {HEAD}")
    assert ("--kubeconfig" in command.group(1)) is kubeconfig
    custom = render_markdown(result, max_chars=8_000, command="make preview")
    assert "```sh\nmake preview\n```" in custom


# -- size limit -------------------------------------------------------------------------------


def big_result(apps: int = 20, per_app: int = 100, lines: int = 120) -> RunResult:
    result = RunResult(mode=Mode.LIVE, base=BASE, head=HEAD)
    for a in range(apps):
        app = AppResult(name=f"app-{a:02d}", target="production")
        for i in range(per_app):
            ref = ObjectRef("v1", "ConfigMap", f"ns-{a}", f"config-{i:04d}")
            # sizes vary so "largest first" is observable
            body = "".join(f"+  key{j}: value-{j}-{'x' * (i % 7)}\n" for j in range(lines + i % 50))
            diff = f"--- live/{ref}\n+++ desired/{ref}\n@@ -1,0 +1,{lines} @@\n{body}"
            app.changes.append(
                ObjectChange(
                    ref=ref, change=Change.UPDATE, diff=diff, source=Source(f"a{a}/c{i}.yaml")
                )
            )
        app.changes.append(
            ObjectChange(
                ref=ObjectRef("v1", "ConfigMap", f"ns-{a}", "same"), change=Change.UNCHANGED
            )
        )
        result.apps.append(app)
    return result


def test_two_thousand_large_diffs_fit_with_a_complete_summary() -> None:
    result = big_result()
    assert sum(len(c.diff) for a in result.apps for c in a.changes) > 10 * GITHUB_COMMENT_LIMIT
    text = render_markdown(result)
    assert len(text) <= 65_000 < GITHUB_COMMENT_LIMIT
    for app in result.apps:
        assert f"| 📝 {app.name} | production | 0 | 100 | 0 | 1 | 0 | — |" in text
    assert "**20 apps:** 0 to create, 2000 to update, 0 to delete, 0 errors." in text
    shown = text.count("<details>")
    assert 0 < shown < 2000
    match = re.search(r"\*\*(\d+) diffs omitted\*\*", text)
    assert match is not None and int(match.group(1)) == 2000 - shown
    assert "gitops-bot preview --repo . --base 0123456789abcdef" in text
    assert text.count("</details>") == shown


def test_largest_diffs_are_dropped_first() -> None:
    result = big_result(apps=1, per_app=60, lines=40)
    text = render_markdown(result, max_chars=30_000)
    assert len(text) <= 30_000
    sizes = {c.ref.name: len(c.diff) for c in result.apps[0].changes}
    shown = set(re.findall(r"<summary>~ ConfigMap ns-0/(config-\d+)", text))
    omitted = set(sizes) - shown - {"same"}
    assert shown and omitted
    assert max(sizes[n] for n in shown) <= min(sizes[n] for n in omitted)


def test_mixed_full_and_omitted_entries_render_as_markdown() -> None:
    text = render_markdown(big_result(apps=2, per_app=30, lines=40), max_chars=30_000)
    full, short = text.count("<details>"), text.count("(diff omitted)")
    assert full and short and full + short == 60
    html = gfm_html(text)
    assert html.count("<em>(diff omitted)</em>") == short
    assert html.count('<pre lang="diff">') == full


def test_a_single_diff_larger_than_the_limit_is_omitted_not_cut() -> None:
    result = big_result(apps=1, per_app=1, lines=5_000)
    text = render_markdown(result, max_chars=10_000)
    assert len(text) <= 10_000
    assert "<details>" not in text
    assert "**1 diff omitted**" in text
    assert "ConfigMap ns-0/config-0000" in text


@pytest.mark.parametrize("limit", [2_000, 5_000, 20_000, 65_000])
def test_never_exceeds_max_chars(limit: int) -> None:
    result = big_result(apps=50, per_app=40, lines=10)
    for app in result.apps:
        app.errors = [ObjectError(message="x" * 300, file=f"f{i}.yaml", line=i) for i in range(20)]
    text = render_markdown(result, max_chars=limit)
    assert utf16_units(text) <= limit


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_size_counts_emoji_as_two_units() -> None:
    # 40,000 astral characters are 40,000 characters but 80,000 UTF-16 units: the diff must go
    ref = ObjectRef("v1", "ConfigMap", "ns", "emoji")
    diff = "--- a\n+++ b\n@@ -1 +1 @@\n+" + "🔥" * 40_000 + "\n"
    result = RunResult(
        mode=Mode.LIVE,
        apps=[AppResult(name="a", target="t", changes=[ObjectChange(ref, Change.CREATE, diff)])],
    )
    text = render_markdown(result)
    assert utf16_units(text) <= 65_000
    assert "**1 diff omitted**" in text
    assert len(text.encode()) <= 262_144


@pytest.mark.parametrize("limit", [150, 400, 1_000])
def test_tiny_limits_are_still_respected(limit: int) -> None:
    text = render_markdown(realistic(), max_chars=limit)
    assert utf16_units(text) <= limit
    assert text.startswith("<!-- gitops-bot:preview -->")


def test_with_thousands_of_apps_quiet_ones_are_counted_not_listed() -> None:
    result = RunResult(mode=Mode.LIVE, base=BASE, head=HEAD)
    for a in range(3_000):
        app = AppResult(name=f"app-{a:04d}", target="production")
        ref = ObjectRef("v1", "ConfigMap", "ns", f"c{a}")
        kind = Change.UPDATE if a % 100 == 0 else Change.UNCHANGED
        app.changes.append(
            ObjectChange(ref, kind, "--- a\n+++ b\n" if kind is Change.UPDATE else "")
        )
        result.apps.append(app)
    text = render_markdown(result)
    assert utf16_units(text) <= 65_000
    for a in range(0, 3_000, 100):
        assert f"| 📝 app-{a:04d} | production | 0 | 1 | 0 | 0 | 0 | — |" in text
    assert "app-0001" not in text
    assert "…and 2970 apps with no changes, no errors and nothing unhealthy." in text
    assert "**3000 apps:** 0 to create, 30 to update" in text


def test_summary_rows_are_cut_only_as_a_last_resort() -> None:
    result = RunResult(mode=Mode.LIVE, base=BASE, head=HEAD)
    for a in range(3_000):
        result.apps.append(
            AppResult(name=f"app-{a:04d}", target="t", errors=[ObjectError(message="down")])
        )
    text = render_markdown(result, max_chars=20_000)
    assert utf16_units(text) <= 20_000
    shown = text.count("| ❌ app-")
    assert 0 < shown < 3_000
    assert f"…and {3_000 - shown} more apps with changes or errors" in text
    assert "**3000 apps:**" in text


def test_many_errors_are_counted_when_they_do_not_fit() -> None:
    result = big_result(apps=1, per_app=1, lines=1)
    result.apps[0].errors = [
        ObjectError(message=f"error number {i} " + "y" * 200) for i in range(1_000)
    ]
    text = render_markdown(result, max_chars=20_000)
    assert len(text) <= 20_000
    shown = text.count("- error number")
    match = re.search(r"…and (\d+) more errors not listed here", text)
    assert match is not None and shown + int(match.group(1)) == 1_000
    assert (
        "| 📝 app-00 |" not in text and "| ❌ app-00 | production | 0 | 1 | 0 | 1 | 1000 |" in text
    )


# -- escaping -----------------------------------------------------------------------------------


def test_a_diff_cannot_break_out_of_its_fence() -> None:
    nasty = "--- a\n+++ b\n@@ -1 +1 @@\n-```\n+````\n+</details>\n+# heading\n+<script>alert(1)</script>\n"
    ref = ObjectRef("v1", "ConfigMap", "ns", "nasty")
    result = RunResult(
        mode=Mode.OFFLINE,
        apps=[AppResult(name="a", target="t", changes=[ObjectChange(ref, Change.UPDATE, nasty)])],
    )
    text = render_markdown(result)
    assert "`````diff\n" + nasty + "`````\n" in text
    html = gfm_html(text)
    assert "<script>" not in html and "<h1>" not in html
    assert "&lt;/details&gt;" in html and html.count("</details>") == 1


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fence("a\n").startswith("```diff\n")
    assert fence("``````x").startswith("```````diff\n")
    assert fence("x").endswith("x\n```\n")


def test_error_messages_and_paths_are_escaped() -> None:
    evil = "<script>alert('x')</script> | col | `code` **bold** [link](javascript:x) @admins $x$"
    result = RunResult(
        mode=Mode.LIVE,
        apps=[
            AppResult(
                name="app|x",
                target="t<b>",
                errors=[
                    ObjectError(
                        message=evil + "\n# not a heading\n- not a list",
                        file="dir/<img src=x>|`.yaml",
                        line=3,
                        ref=ObjectRef("v1", "ConfigMap", "n", "c"),
                    )
                ],
            )
        ],
        errors=[ObjectError(message="- leading dash <b>")],
    )
    text = render_markdown(result)
    for raw in ("<script>", "<img", "<b>", "`code`", "**bold**", "[link]", "@admins", "$x$"):
        assert raw not in text
    html = gfm_html(text)
    assert "<script>" not in html and "<img" not in html and "<strong>bold" not in html
    assert "<a " not in html and "<h1>" not in html
    assert "&lt;script&gt;alert" in html
    row = next(line for line in text.splitlines() if line.startswith("| ❌ app"))
    assert row.count("|") == 9, "a | in a name must not add a table column"
    assert html.count("<td") == 8
    # the message keeps its words, on one line
    assert "not a heading - not a list" in html


@pytest.mark.parametrize("text", ["-x", "+x", "=x", "1. x", "#x", ">x"])
def test_escape_md_neutralizes_line_start_markup(text: str) -> None:
    html = gfm_html("- " + escape_md(text) + "\n")
    assert html.count("<li>") == 1 and "<ol>" not in html and "<h1>" not in html
    assert "<blockquote>" not in html


def test_text_format_neutralizes_terminal_escapes() -> None:
    result = RunResult(
        mode=Mode.OFFLINE,
        apps=[
            AppResult(
                name="a", target="t", errors=[ObjectError(message="bad \x1b[2J\x1b]0;pwned\x07")]
            )
        ],
    )
    text = render_text(result, color=True)
    assert "\x1b[2J" not in text and "\x07" not in text and "\\x1b[2J" in text


# -- no Secret value in any format --------------------------------------------------------------


def test_realistic_report_shows_no_secret_value() -> None:
    values = secret_values(SECRET_OLD) + secret_values(SECRET_NEW)
    assert "correct horse battery" in values and "Tr0ub4dor&3" in values
    result = realistic()
    for output in (
        render_markdown(result),
        render_text(result),
        render_text(result, color=True),
        render_json(result),
    ):
        for value in values:
            assert value not in output
            assert escape_md(value) not in output


# Any text, but starting with a character no report contains, so that finding a value in the
# output is a leak and never a coincidence with the report's own words.
_value = st.builds(
    lambda mark, rest: mark + rest,
    st.sampled_from("§¶¤Ω"),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
        min_size=5,
        max_size=30,
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    old=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _value, max_size=4),
    new=st.dictionaries(st.sampled_from(["a", "b", "c", "e"]), _value, max_size=4),
    use_string_data=st.booleans(),
)
def test_no_secret_value_in_any_report_format(
    old: dict[str, str], new: dict[str, str], use_string_data: bool
) -> None:
    def secret(values: dict[str, str], plain: bool) -> Obj:
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "n"},
        }
        if plain:
            obj["stringData"] = dict(values)
        else:
            obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        return obj

    old_obj, new_obj = secret(old, False), secret(new, use_string_data)
    ref = ObjectRef.of(new_obj)
    result = RunResult(
        mode=Mode.LIVE,
        apps=[
            AppResult(
                name="a",
                target="t",
                changes=[ObjectChange(ref, Change.UPDATE, object_diff(old_obj, new_obj, ref=ref))],
            )
        ],
    )
    outputs = [render_markdown(result), render_text(result), render_json(result)]
    for value in secret_values(old_obj) + secret_values(new_obj):
        for output in outputs:
            assert value not in output
            assert escape_md(value) not in output
            assert json.dumps(value)[1:-1] not in output


def test_render_redacts_values_quoted_back_by_the_server() -> None:
    result = realistic()
    result.apps[0].errors.append(
        ObjectError(message='Secret "redis-auth" is invalid: value "Tr0ub4dor&3" is not allowed')
    )
    for fmt in ("markdown", "text", "json"):
        plain = render(result, fmt=fmt)  # type: ignore[arg-type]
        assert "Tr0ub4dor" in plain
        out = render(result, fmt=fmt, redact=secret_values(SECRET_NEW))  # type: ignore[arg-type]
        assert "Tr0ub4dor" not in out
        assert out.count("redacted") == plain.count("redacted") + 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
def test_escaped_text_renders_as_itself_on_github(text: str) -> None:
    """Whatever a name or message contains, GitHub shows exactly its text (newlines and control
    characters as spaces) in a list item and in one table cell: no tag, no structure."""
    flat = " ".join(
        re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", " ", text).split()
    )
    if not flat:
        return
    item = gfm_html("- " + escape_md(text) + " z\n")
    match = re.fullmatch(r"<ul>\n<li>(.*) z</li>\n</ul>\n", item, re.S)
    assert match is not None, item
    inner = re.sub(r"</?a( [^>]*)?>", "", match.group(1))  # GitHub autolinks bare URLs: fine
    assert "<" not in inner
    assert " ".join(html.unescape(inner).split()) == flat
    table = gfm_html("| a |\n|---|\n| " + escape_md(text) + " |\n")
    assert table.count("<td") == 1


# -- a deploy dry run, config failures, transient errors, files no app owns -------------------------


def test_a_deploy_dry_run_says_nothing_was_changed_in_every_format(
    md_snapshot: SnapshotAssertion,
) -> None:
    result = realistic(Mode.DEPLOY)
    result.dry_run = True
    for app in result.apps:
        app.health = []
    markdown = render_markdown(result)
    assert "### GitOps deploy (dry run: nothing was changed) · <code>0123456..fedcba9</code>" in (
        markdown
    )
    assert "**Dry run: nothing was changed.**" in markdown
    assert "Applied to the cluster" not in markdown
    assert "1 to create, 2 to update, 1 to delete" in markdown  # not "created"
    text = render_text(result)
    assert text.startswith(
        "GitOps deploy 0123456..fedcba9 (deploy, dry run: nothing was changed)\n"
    )
    data = json.loads(render_json(result))
    assert data["dryRun"] is True  # for the machine; and the phrase, as everywhere, for people
    assert data["title"] == "GitOps deploy 0123456..fedcba9 (deploy, dry run: nothing was changed)"
    assert markdown == md_snapshot
    # a real deploy keeps its wording
    result.dry_run = False
    assert json.loads(render_json(result))["title"] == "GitOps deploy 0123456..fedcba9 (deploy)"
    assert "Applied to the cluster, pruned" in render_markdown(result)
    assert "1 created, 2 updated, 1 deleted" in render_markdown(result)


def test_a_configuration_failure_does_not_also_say_no_app_is_affected() -> None:
    result = RunResult(
        mode=Mode.OFFLINE,
        base=BASE,
        head=HEAD,
        errors=[
            ObjectError("apps[0].name: 'Web' does not match", file=".gitops.yaml", line=3),
            ObjectError("duplicate app name 'web'", file=".gitops.yaml", line=9),
        ],
    )
    markdown, text = render_markdown(result), render_text(result)
    assert NO_APPS not in markdown and NO_APPS not in text
    assert "#### Errors" in markdown and markdown.count("(<code>.gitops.yaml:") == 2
    assert "! (.gitops.yaml:9): duplicate app name 'web'" in text
    assert "No changes." not in markdown
    # with no error and no app, it is still said
    empty = RunResult(mode=Mode.OFFLINE, base=BASE, head=HEAD)
    assert NO_APPS in render_markdown(empty) and NO_APPS in render_text(empty)


def test_transient_errors_say_what_happens_where_the_report_is_read() -> None:
    result = realistic()
    cli = [render_markdown(result), render_text(result), render(result, fmt="text")]
    bot = [render_markdown(result, retried=True), render_text(result, retried=True)]
    bot.append(render(result, fmt="markdown", retried=True))
    for output in cli:
        assert "transient: run again when the cluster is reachable" in output
        assert "will be retried" not in output
    for output in bot:
        assert "transient: will be retried" in output
        assert "run again" not in output


def test_changed_files_that_belong_to_no_app() -> None:
    files = [f"guestbook/file-{i:02d}.yaml" for i in range(25)]
    result = RunResult(mode=Mode.OFFLINE, base=BASE, head=HEAD, unowned_files=files)
    markdown = render_markdown(result)
    assert NO_APPS in markdown
    assert "**25 changed files belong to no app**, so no preview covers them:" in markdown
    assert "<code>guestbook/file-19.yaml</code> …and 5 more." in markdown
    assert "file-20" not in markdown
    text = render_text(result)
    assert (
        "25 changed files belong to no app, so no preview covers them: guestbook/file-00.yaml,"
        in (text)
    )
    assert "guestbook/file-19.yaml …and 5 more." in text
    assert json.loads(render_json(result))["unownedFiles"] == files
    one = RunResult(mode=Mode.OFFLINE, unowned_files=["<b>|x.yaml"])
    assert (
        "**1 changed file belongs to no app**, so no preview covers it: <code>&lt;b&gt;&#124;x.yaml</code>."
        in (render_markdown(one))
    )
    # beside apps that are affected, the files are still named
    mixed = realistic()
    mixed.unowned_files = ["README.md"]
    assert "belongs to no app" in render_markdown(mixed)
    assert "belongs to no app" in render_text(mixed)


# -- the text report groups diffs by app and target -------------------------------------------


def twins() -> RunResult:
    """Two apps that each hold a ConfigMap named 'settings' in the same namespace name."""
    result = RunResult(mode=Mode.OFFLINE, base=BASE, head=HEAD)
    for name, target, value in (("frontend", "staging", "a"), ("backend", "production", "b")):
        old: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "app"},
            "data": {"mode": "old"},
        }
        new = {**old, "data": {"mode": value}}
        result.apps.append(
            AppResult(
                name=name,
                target=target,
                changes=[change(old, new, Change.UPDATE, f"{name}/settings.yaml")],
            )
        )
    return result


def test_text_diffs_sit_under_their_app_and_target(text_snapshot: SnapshotAssertion) -> None:
    text = render_text(twins())
    frontend = text.index("=== frontend -> staging ===")
    backend = text.index("=== backend -> production ===")
    assert frontend < text.index("+  mode: a") < backend < text.index("+  mode: b")
    assert text == text_snapshot
    colored = render_text(twins(), color=True)
    assert "\x1b[1m=== frontend -> staging ===\x1b[0m" in colored


# -- the PR's own changes apart from drift, and restarts ----------------------------------------


def classified_result() -> RunResult:
    """A live preview split by origin: the PR changes the frontend's image; someone scaled the
    worker by hand (drift); the api was changed by the PR and edited by hand (both); the PR's
    ConfigMap change is already in the cluster."""
    web = deployment("frontend", "web:1")
    web_new = deployment("frontend", "web:2")
    worker = deployment("worker", "worker:1")
    worker_live = deployment("worker", "worker:1", replicas=9)
    api = deployment("api", "api:1")
    api_new = deployment("api", "api:2")
    api_live = deployment("api", "api:1", replicas=7)
    cm_old: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "flags", "namespace": "guestbook"},
        "data": {"beta": "false"},
    }
    cm_new = {**cm_old, "data": {"beta": "true"}}

    def obj_change(
        ref_obj: Obj, kind: Change, origin: Origin, diff: str, pr: str = "", drift: str = ""
    ) -> ObjectChange:
        return ObjectChange(
            ref=ObjectRef.of(ref_obj),
            change=kind,
            diff=diff,
            source=Source(f"apps/guestbook/{ref_obj['metadata']['name']}.yaml", line=1),
            origin=origin,
            pr_diff=pr,
            drift_diff=drift,
        )

    ref = ObjectRef.of

    def live(old: Obj, new: Obj) -> str:
        return object_diff(old, new, ref=ref(new))

    def offline(old: Obj, new: Obj) -> str:
        return object_diff(old, new, ref=ref(new), labels=("base", "head"))

    app = AppResult(
        name="guestbook",
        target="production",
        changes=[
            obj_change(
                api_new,
                Change.UPDATE,
                Origin.BOTH,
                live(api_live, api_new),
                pr=offline(api, api_new),
                drift=object_diff(api_live, api, ref=ref(api), labels=("live", "base")),
            ),
            obj_change(cm_new, Change.UNCHANGED, Origin.PR, "", pr=offline(cm_old, cm_new)),
            obj_change(
                web_new, Change.UPDATE, Origin.PR, live(web, web_new), pr=offline(web, web_new)
            ),
            obj_change(
                worker,
                Change.UPDATE,
                Origin.DRIFT,
                live(worker_live, worker),
                drift=live(worker_live, worker),
            ),
        ],
        restarts=[
            Restart(
                ref=ref(api_new),
                reasons=("pod template changed: spec.containers[api].image",),
            ),
            Restart(
                ref=ref(web_new),
                reasons=("config map app-config changed",),
            ),
            Restart(
                ref=ref(worker),
                reasons=("config map flags changed in place: no restart (…)",),
                restart=False,
            ),
        ],
    )
    return RunResult(
        mode=Mode.LIVE, base=BASE, head=HEAD, apps=[app], unowned_files=["docs/README.md"]
    )


def test_drift_is_shown_apart_from_the_prs_changes(
    md_snapshot: SnapshotAssertion, text_snapshot: SnapshotAssertion
) -> None:
    result = classified_result()
    markdown = render_markdown(result)
    assert (
        "**2 objects already differ in the cluster** from what the base declares; merging also "
        "overwrites them" in markdown
    )
    pr_section = markdown.split("##### Changed by this PR")[1].split("#####")[0]
    drift_section = markdown.split(
        "##### Already differs in the cluster; merging also overwrites it"
    )[1]
    assert pr_section.count("<details>") == 3  # api, flags (already live), frontend
    assert "ConfigMap guestbook/flags" in pr_section and "already in the cluster" in pr_section
    assert "+++ head/Deployment guestbook/api" in pr_section
    assert "replicas: 7" not in pr_section  # the hand edit is not the PR's doing
    assert drift_section.count("<details>") == 2  # api (also changed by this PR), worker
    assert "-  replicas: 7" in drift_section and "-  replicas: 9" in drift_section
    assert "also changed by this PR" in drift_section
    assert "frontend" not in drift_section
    html = gfm_html(markdown)
    assert html.count("<details>") == html.count("</details>") == 5
    assert markdown == md_snapshot
    text = render_text(result)
    assert (
        "  = ConfigMap guestbook/flags  (apps/guestbook/flags.yaml:1)  [changed by this PR" in text
    )
    assert "  ~ Deployment guestbook/worker  (apps/guestbook/worker.yaml:1)  [drift" in text
    assert text.index("=== guestbook -> production: changed by this PR ===") < text.index(
        "=== guestbook -> production: already differs in the cluster; merging also overwrites it"
    )
    assert text == text_snapshot


def test_restarts_are_listed_before_the_diffs() -> None:
    result = classified_result()
    markdown = render_markdown(result)
    restart = markdown.index("**Will restart:**")
    assert restart < markdown.index("<details>")
    assert (
        "- <code>Deployment guestbook/frontend</code> (config map app-config changed)\n" in markdown
    )
    assert "**Changed without a restart:**" in markdown
    text = render_text(result, diffs=False)
    assert "  will restart: Deployment guestbook/frontend (config map app-config changed)" in text
    assert "  changed without a restart: Deployment guestbook/worker (config map flags" in text
    # with several apps each line names its app
    result.apps.append(AppResult(name="other", target="staging"))
    assert "(config map app-config changed) — guestbook → production" in render_markdown(result)


def test_a_thousand_restarts_are_counted_not_listed() -> None:
    result = classified_result()
    result.apps[0].restarts = [
        Restart(ref=ObjectRef("apps/v1", "Deployment", "ns", f"d{i:04d}"), reasons=("x" * 50,))
        for i in range(1_000)
    ]
    markdown = render_markdown(result, max_chars=20_000)
    assert utf16_units(markdown) <= 20_000
    shown = markdown.count("- <code>Deployment ns/d")
    assert 0 < shown < 1_000
    assert f"…and {1_000 - shown} more workloads." in markdown


def test_drift_and_restarts_are_redacted_too() -> None:
    result = classified_result()
    result.apps[0].changes[0].drift_diff += "+  token: hunter2-secret\n"
    result.apps[0].changes[0].pr_diff += "+  token: hunter2-secret\n"
    result.apps[0].restarts[0] = Restart(
        ref=result.apps[0].restarts[0].ref, reasons=("quoted hunter2-secret",)
    )
    for fmt in ("markdown", "text", "json"):
        assert "hunter2" in render(result, fmt=fmt)  # type: ignore[arg-type]
        out = render(result, fmt=fmt, redact=["hunter2-secret"])  # type: ignore[arg-type]
        assert "hunter2" not in out


# -- comment parts ------------------------------------------------------------------------------


def test_a_report_that_fits_is_one_part_without_a_marker() -> None:
    result = realistic()
    assert comment_parts(result, limit=65_000) == [render_markdown(result, marker="")]
    assert comment_parts(RunResult(mode=Mode.OFFLINE), limit=2_000) == [
        render_markdown(RunResult(mode=Mode.OFFLINE), marker="")
    ]


def test_long_reports_continue_in_numbered_parts() -> None:
    result = big_result(apps=3, per_app=30, lines=60)
    parts = comment_parts(result, limit=20_000, max_parts=10)
    assert 1 < len(parts) <= 10
    assert all(utf16_units(p) <= 20_000 for p in parts)
    first = parts[0]
    assert "| 📝 app-00 | production | 0 | 30 | 0 | 1 | 0 | — |" in first
    assert "**3 apps:** 0 to create, 90 to update" in first
    more = f"parts 2\N{EN DASH}{len(parts)} (the next {len(parts) - 1} comments)"
    assert f"Diffs continue in {more}." in first
    assert "left out" not in first
    for number, part in enumerate(parts[1:], start=2):
        assert part.startswith(
            f"### GitOps preview · <code>0123456..fedcba9</code> · part {number} of {len(parts)}\n"
        )
        assert "| App |" not in part
    shown = [n for p in parts for n in re.findall(r"<summary>~ ConfigMap (ns-\d/config-\d+)", p)]
    assert len(shown) == len(set(shown)) == 90
    # an app that goes on in the next part is named again there
    assert any("#### app-01 → production (continued)" in p for p in parts[1:])
    assert parts == comment_parts(result, limit=20_000, max_parts=10)  # deterministic


def test_a_diff_larger_than_a_part_is_split_with_its_fence_reopened() -> None:
    result = big_result(apps=1, per_app=1, lines=2_000)
    result.apps[0].changes[0].diff += "+  quoted: '```'\n"
    diff = result.apps[0].changes[0].diff
    parts = comment_parts(result, limit=10_000)
    assert len(parts) > 2
    bodies = []
    for part in parts:
        html = gfm_html(part)
        assert html.count("<details>") == html.count("</details>") == part.count("<details>")
        bodies += re.findall(r"(`{3,})diff\n(.*?)(?<=\n)\1\n", part, re.S)
    pieces = [body for _, body in bodies]
    assert "".join(pieces) == diff  # nothing truncated, nothing repeated
    assert all(ticks == "````" for ticks, _ in bodies[-1:])
    count = len(pieces)
    assert f"part {count} of {count} of this diff" in parts[-1]


def test_an_enormous_line_is_cut_within_the_line() -> None:
    ref = ObjectRef("v1", "ConfigMap", "ns", "minified")
    diff = "--- a\n+++ b\n@@ -1 +1 @@\n+  json: " + "{" * 30_000 + "\n"
    result = RunResult(
        mode=Mode.OFFLINE,
        apps=[AppResult(name="a", target="t", changes=[ObjectChange(ref, Change.CREATE, diff)])],
    )
    parts = comment_parts(result, limit=5_000)
    assert all(utf16_units(p) <= 5_000 for p in parts)
    bodies = [b for p in parts for _, b in re.findall(r"(`{3,})diff\n(.*?)(?<=\n)\1\n", p, re.S)]
    assert "".join(bodies).replace("\n", "") == diff.replace("\n", "")


def test_beyond_ten_parts_the_largest_diffs_are_left_out_and_named() -> None:
    result = big_result(apps=2, per_app=60, lines=120)
    command = "gitops-bot preview --repo . --base main --head pr-42 --format text"
    parts = comment_parts(result, limit=15_000, max_parts=10, full_command=command)
    assert len(parts) == 10
    assert all(utf16_units(p) <= 15_000 for p in parts)
    shown = {n for p in parts for n in re.findall(r"<summary>~ ConfigMap (ns-\d/config-\d+)", p)}
    note = parts[-1].split("left out** (the largest)")[1]
    named = set(re.findall(r"<code>~ ConfigMap (ns-\d/config-\d+)</code> in app-0\d", note))
    everything = {f"ns-{a}/config-{i:04d}" for a in range(2) for i in range(60)}
    assert shown | named == everything and not shown & named
    assert f"```sh\n{command}\n```" in parts[-1]
    match = re.search(r"\*\*(\d+) diffs left out\*\* \(the largest\): part 10 names them", parts[0])
    assert match is not None and int(match.group(1)) == len(named)
    sizes = {f"{c.ref.namespace}/{c.ref.name}": len(c.diff) for a in result.apps for c in a.changes}
    assert max(sizes[n] for n in shown) <= min(sizes[n] for n in named)


def test_one_part_at_most_is_the_single_comment_report() -> None:
    result = big_result(apps=1, per_app=30, lines=60)
    assert comment_parts(result, limit=10_000, max_parts=1) == [
        render_markdown(result, max_chars=10_000, marker="")
    ]


def test_comment_parts_refuses_a_limit_too_small_to_work_with() -> None:
    with pytest.raises(ValueError, match="at least 1,000"):
        comment_parts(realistic(), limit=500)
    with pytest.raises(ValueError, match="max_parts"):
        comment_parts(realistic(), limit=5_000, max_parts=0)


_diff_line = st.lists(
    st.sampled_from([*"ab `~<>/-+|\\*_#\n", "</details>", "```", "🔥", "<details>"]),
    max_size=60,
).map("".join)


@st.composite
def random_results(draw: st.DrawFn) -> RunResult:
    result = RunResult(mode=draw(st.sampled_from([Mode.OFFLINE, Mode.LIVE])), base=BASE, head=HEAD)
    for a in range(draw(st.integers(1, 3))):
        app = AppResult(name=f"app-{a}", target=draw(st.sampled_from(["prod", "staging"])))
        for i in range(draw(st.integers(0, 6))):
            lines = draw(st.lists(_diff_line, max_size=draw(st.sampled_from([3, 40, 400]))))
            if draw(st.booleans()) and draw(st.booleans()):
                lines.append("x" * draw(st.integers(1_000, 9_000)))  # minified
            diff = "--- a\n+++ b\n@@ -1 +1 @@\n" + "".join(f"+{line}\n" for line in lines)
            ref = ObjectRef("v1", "ConfigMap", f"ns{a}", f"c{i}")
            origin = draw(st.sampled_from([None, Origin.PR, Origin.DRIFT, Origin.BOTH]))
            app.changes.append(
                ObjectChange(
                    ref,
                    draw(st.sampled_from([Change.CREATE, Change.UPDATE, Change.DELETE])),
                    diff,
                    origin=origin,
                    pr_diff=diff if origin in (Origin.PR, Origin.BOTH) else "",
                    drift_diff=diff if origin in (Origin.DRIFT, Origin.BOTH) else "",
                )
            )
        if any(c.origin for c in app.changes):
            for c in app.changes:  # a classified app has an origin on every change
                if c.origin is None:
                    c.origin, c.pr_diff = Origin.PR, c.diff
        result.apps.append(app)
    return result


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    result=random_results(),
    limit=st.integers(1_000, 12_000),
    max_parts=st.integers(1, 10),
)
def test_comment_parts_properties(result: RunResult, limit: int, max_parts: int) -> None:
    """Whatever the diffs hold and however small the limit: at most ``max_parts`` parts, each
    within ``limit``, each valid Markdown on its own (every <details> and every fence closed in
    its part), and every diff either shown whole (in order across its pieces) or named as left
    out."""
    parts = comment_parts(result, limit=limit, max_parts=max_parts)
    assert 1 <= len(parts) <= max_parts
    assert parts == comment_parts(result, limit=limit, max_parts=max_parts)
    shown: dict[str, list[str]] = {}
    accounted = 0  # entries named as left out, or counted in a "…and N more"
    for part in parts:
        assert utf16_units(part) <= limit
        html = gfm_html(part)
        opened = part.count("\n<details><summary>")
        # an unclosed fence would swallow the rest of the part, tags included
        assert html.count("<details>") == html.count("</details>") == opened
        for title, _ticks, body in re.findall(
            r"<summary>(.*?)</summary>\n\n(`{3,})diff\n(.*?)(?<=\n)\2\n", part, re.S
        ):
            key = re.sub(r" <i>\(part \d+ of \d+ of this diff\)</i>", "", title)
            shown.setdefault(key, []).append(body)
        accounted += len(re.findall(r"^- <code>. ConfigMap ns\d/c\d</code> in ", part, re.M))
        accounted += len(re.findall(r"^- . ConfigMap ns\d/c\d.*_\(diff omitted\)_$", part, re.M))
        for pattern in (r"\n…and (\d+) more\.\n", r"…and (\d+) more changed objects? not listed"):
            accounted += sum(int(n) for n in re.findall(pattern, part))
    expected = 0
    for app in result.apps:
        for c in app.changes:
            diffs = {
                None: [c.diff],
                Origin.PR: [c.pr_diff],
                Origin.DRIFT: [c.drift_diff],
                Origin.BOTH: [c.pr_diff, c.drift_diff],
            }[c.origin]
            expected += len(diffs)
            keys = [k for k in shown if f" {escape_md(c.ref)} " in k]
            for diff, key in zip(diffs, keys, strict=False):
                # shown whole: its pieces, in order, are the diff (a cut line gains a newline)
                assert "".join(shown[key]).replace("\n", "") == diff.replace("\n", "")
    assert len(shown) + accounted == expected
