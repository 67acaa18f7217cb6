"""The README, the Makefile and the container files agree with the code they describe."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMPOSE_FILE = ROOT / "docker-compose.single.yml"  # one process on SQLite
CLUSTER_COMPOSE = ROOT / "docker-compose.yml"  # web processes on PostgreSQL, Redis, nginx
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

TABLE_ROW = re.compile(r"^\| `(?P<env>[A-Z0-9_]+)` \| (?P<default>.*?) \| (?P<description>.*) \|$")
# ${NAME}, ${NAME:-default}, ${NAME:?error} as Compose interpolates them.
COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<kind>[-?])(?P<arg>[^}]*))?\}")


def section(markdown: str, title: str) -> str:
    """The text under the level-2 heading ``title``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable a setting is documented under (its first accepted name)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    if isinstance(alias, str):
        return alias
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def default_cell(field: FieldInfo) -> str:
    """How the README writes a setting's default: in environment-variable syntax."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"`{text}`" if text else "(empty)"


def readme_settings_table() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in section(README, "Configuration").splitlines():
        if row := TABLE_ROW.match(line):
            assert row["env"] not in rows, f"{row['env']} is listed twice"
            rows[row["env"]] = (row["default"], row["description"])
    return rows


SETTINGS_ENV = {env_name(name, field): field for name, field in Settings.model_fields.items()}


@pytest.mark.parametrize("env", sorted(SETTINGS_ENV))
def test_every_setting_is_in_the_readme_with_its_default(env: str) -> None:
    """Each Settings field has a README configuration row with its real default."""
    field = SETTINGS_ENV[env]
    expected = f"| `{env}` | {default_cell(field)} | {field.description} |"
    rows = readme_settings_table()

    assert env in rows, f"add this row to the README configuration table:\n{expected}"
    default, description = rows[env]
    assert default == default_cell(field), f"README default of {env} is stale:\n{expected}"
    assert description.strip(), f"README row of {env} needs a description"


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    """Every variable in the README configuration table is read by Settings."""
    unknown = set(readme_settings_table()) - set(SETTINGS_ENV)
    assert not unknown, f"README documents variables Settings does not read: {sorted(unknown)}"


def test_readme_quick_start_is_make_run_and_make_test() -> None:
    """The quick start is exactly the two commands a newcomer needs."""
    blocks = re.findall(r"```\w*\n(.*?)```", section(README, "Quick start"), re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_make_targets_named_in_the_docs_exist() -> None:
    """Every `make X` the README or docs/ tell people to run is a Makefile target."""
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named: dict[str, set[str]] = {}
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"`make ([a-z][a-z-]*)`|^make ([a-z][a-z-]*)", text, re.M):
            named.setdefault("".join(target), set()).add(document.name)

    assert {"run", "test", "lint", "bench"} <= named.keys()
    missing = {target: sorted(where) for target, where in named.items() if target not in targets}
    assert not missing, f"documented make targets missing from the Makefile: {missing}"


def compose_app() -> dict:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return compose["services"]["app"]


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Substitute ${…} the way Docker Compose does, failing where Compose would."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, arg = match["name"], match["kind"], match["arg"]
        if environ.get(name):
            return environ[name]
        if kind == "?":
            raise ValueError(arg)
        return arg or ""

    return COMPOSE_VARIABLE.sub(substitute, value)


def test_compose_keeps_the_database_on_a_named_volume() -> None:
    """docker-compose.single.yml mounts a named volume at /data and points DATABASE_URL into it."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    app = compose["services"]["app"]
    mounts = dict(volume.rsplit(":", 1) for volume in app["volumes"])

    assert "/data" in mounts.values()
    volume = next(source for source, target in mounts.items() if target == "/data")
    assert volume in (compose.get("volumes") or {}), f"{volume} is not a named volume"
    assert app["environment"]["DATABASE_URL"] == "sqlite:////data/hashroom.db"
    assert "8000:8000" in app["ports"]
    assert "/healthz" in " ".join(app["healthcheck"]["test"])


def test_compose_demands_a_secret_and_runs_in_production() -> None:
    """Compose refuses to start without HASHROOM_SECRET_KEY and sets production mode."""
    environment = compose_app()["environment"]

    assert environment["HASHROOM_ENV"] == "production"
    assert environment["HOST"] == "0.0.0.0"
    with pytest.raises(ValueError, match="HASHROOM_SECRET_KEY"):
        interpolate(environment["HASHROOM_SECRET_KEY"], {})


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings docker-compose.single.yml passes are real Settings names and build a valid
    production configuration once a secret is supplied."""
    environment = compose_app()["environment"]
    accepted = {
        choice
        for name, field in Settings.model_fields.items()
        for choice in (
            field.validation_alias.choices
            if isinstance(field.validation_alias, AliasChoices)
            else [env_name(name, field)]
        )
    }
    assert set(environment) <= accepted, f"unknown settings: {set(environment) - accepted}"

    for name in accepted:
        monkeypatch.delenv(name, raising=False)
    host_environ = {"HASHROOM_SECRET_KEY": "s" * 48}
    for name, value in environment.items():
        monkeypatch.setenv(name, interpolate(str(value), host_environ))
    settings = Settings()

    assert settings.env == "production"
    assert settings.database_url == "sqlite:////data/hashroom.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)


def test_container_migrates_before_serving() -> None:
    """The image and the compose service both run `alembic upgrade head` before the app."""
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M)
    assert cmd
    for command in (" ".join(json.loads(cmd.group(1))), " ".join(compose_app()["command"])):
        assert re.search(r"alembic upgrade head && (exec )?python -m app", command), command


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` keep ``path`` (relative to the repo) out of the
    build context: a pattern matches the path or one of its parent folders; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        variants = {pattern}
        if pattern.startswith("**/"):
            variants |= {pattern[3:], "*/" + pattern[3:]}
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            ignored = not negated
    return ignored


def test_dockerfile_copies_files_that_reach_the_build_context() -> None:
    """Everything the Dockerfile COPYs exists and is not excluded by .dockerignore."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    assert {"pyproject.toml", "README.md", "app", "alembic.ini", "alembic"} <= set(sources)

    for source in sources:
        path = ROOT / source
        assert path.exists(), f"Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                continue
            assert not dockerignored(relative, patterns), f".dockerignore drops {relative}"


def cluster_compose() -> dict:
    return yaml.safe_load(CLUSTER_COMPOSE.read_text(encoding="utf-8"))


def test_cluster_compose_runs_web_processes_behind_nginx_after_one_migration() -> None:
    """docker-compose.yml: PostgreSQL and Redis with healthchecks, a one-shot migrate
    service the web processes wait for, two web processes of one image with distinct process
    ids, and nginx in front with deploy/nginx.conf; data on a named volume."""
    compose = cluster_compose()
    services = compose["services"]
    webs = [services[n] for n in services if n.startswith("web")]
    assert len(webs) >= 2
    assert " ".join(services["migrate"]["command"]) == "alembic upgrade head"
    assert services["migrate"]["restart"] == "no"
    ids = set()
    for web in webs:
        assert web["image"] == services["migrate"]["image"]
        assert "alembic" not in " ".join(web["command"])
        assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/healthz" in " ".join(web["healthcheck"]["test"])
        ids.add(web["environment"]["HASHROOM_PROCESS_ID"])
        assert web["environment"]["HASHROOM_REDIS_URL"].startswith("redis://redis:")
        assert web["environment"]["HASHROOM_ENV"] == "production"
    assert len(ids) == len(webs)
    for name in ("postgres", "redis", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["nginx"]["volumes"])
    assert mounts["./deploy/nginx.conf"] == "/etc/nginx/nginx.conf"
    data = services["postgres"]["volumes"][0].split(":")[0]
    assert data in compose["volumes"]
    # nginx's fixed address is the one proxy whose X-Forwarded-For the app believes.
    address = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert json.loads(webs[0]["environment"]["HASHROOM_TRUSTED_PROXIES"]) == [address]


def test_cluster_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The web processes' settings build a valid production configuration from .env.example
    filled in, with Redis on, leases on and PostgreSQL as the database."""
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert {"HASHROOM_SECRET_KEY", "POSTGRES_PASSWORD", "HASHROOM_PUBLIC_URL"} <= set(example)
    environment = cluster_compose()["services"]["web1"]["environment"]
    for name in list(Settings.model_fields) + ["DATABASE_URL", "HOST", "PORT"]:
        monkeypatch.delenv(name if name.isupper() else f"HASHROOM_{name.upper()}", raising=False)
    host_environ = {**example, "HASHROOM_SECRET_KEY": "s" * 48, "POSTGRES_PASSWORD": "pw"}
    for name, value in environment.items():
        monkeypatch.setenv(name, interpolate(str(value), host_environ))
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://hashroom:pw@postgres:")
    assert settings.redis_url and settings.uses_leases and settings.process_id == "web1"
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(environment["DATABASE_URL"], {})
