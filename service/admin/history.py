"""Versions of each mapping file, and a rule-level diff between any two.

Two sources, merged by content: the database records every version of mappings/*.yaml the service
runs, the first time a process sees it (so a deployment without git keeps its history from its first
start on); and, when the files sit in a git checkout with git installed (a clone), every committed
version from `git log`, so a fresh clone shows the history from the first commit. A version is the
text of the kind's file plus people.yaml (the templates it uses), identified by a digest of both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import subprocess  # noqa: S404 - git, with fixed arguments and no shell
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import DateTime, Engine, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from service.mapping import spec as specs
from service.mapping.review import Change, diff
from service.store.engine import session
from service.store.models import Base
from service.store.records import utcnow

log = logging.getLogger(__name__)
PEOPLE = "people.yaml"
GIT_TIMEOUT_S = 10
#: Most committed versions read from git per kind: plenty for review, bounded for a page view.
GIT_LIMIT = 100


class MappingVersionRow(Base):
    """A version of one kind's mapping as first seen by a running service (migration 0006)."""

    __tablename__ = "mapping_versions"
    __table_args__ = (UniqueConstraint("kind", "digest", name="uq_mapping_versions"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    spec_text: Mapped[str] = mapped_column(Text, nullable=False)
    people_text: Mapped[str] = mapped_column(Text, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


@dataclass(frozen=True)
class Version:
    kind: str
    digest: str
    version: str            # the file's own `version:` (MAJOR.MINOR.PATCH)
    at: datetime            # commit time (git) or first seen (database), UTC
    origin: str             # `commit 1a2b3c4: subject`, `first seen by the service`, …
    spec_text: str
    people_text: str
    current: bool = False

    @property
    def short(self) -> str:
        return self.digest[:12]


class HistoryError(ValueError):
    """A version that does not load."""


class UnknownVersion(HistoryError):
    """No known version has this id."""


def digest(spec_text: str, people_text: str) -> str:
    return hashlib.sha256(f"{spec_text}\0{people_text}".encode()).hexdigest()


def _current_files(folder: Path) -> dict[str, tuple[str, str]]:
    """kind → (the kind's file text, people.yaml text) as shipped now (read once per process: what runs)."""
    return dict(_read_files(str(folder)))


@lru_cache(maxsize=4)
def _read_files(folder_name: str) -> tuple[tuple[str, tuple[str, str]], ...]:
    folder = Path(folder_name)
    people = (folder / PEOPLE).read_text(encoding="utf-8") if (folder / PEOPLE).exists() else ""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name != PEOPLE:
            text = path.read_text(encoding="utf-8")
            out[_kind_of(text, path.name)] = (text, people)
    return tuple(out.items())


def _kind_of(text: str, name: str) -> str:
    data = yaml.safe_load(text)
    return str(data["kind"]) if isinstance(data, dict) and "kind" in data else name.removesuffix(".yaml")


def record_current(engine: Engine, folder: Path | None = None) -> int:
    """Store the running mapping versions not yet recorded; returns how many were new."""
    new = 0
    for kind, (text, people) in _current_files(folder or specs.folder()).items():
        key = digest(text, people)
        with session(engine) as s:
            if s.scalars(select(MappingVersionRow.pk).where(MappingVersionRow.kind == kind,
                                                            MappingVersionRow.digest == key)).first():
                continue
        try:
            with session(engine, write=True) as s:
                s.add(MappingVersionRow(kind=kind, digest=key, version=_version_of(text), spec_text=text,
                                        people_text=people, first_seen_at=utcnow()))
            new += 1
        except IntegrityError:  # another process recorded it at the same moment
            continue
    return new


def _version_of(text: str) -> str:
    data = yaml.safe_load(text)
    return str(data.get("version", "?")) if isinstance(data, dict) else "?"


def versions(engine: Engine, kind: str, folder: Path | None = None) -> list[Version]:
    """Every known version of `kind`, newest first; the one running now is marked current."""
    base = folder or specs.folder()
    current = _current_files(base).get(kind)
    current_digest = digest(*current) if current else None
    found: dict[str, Version] = {}
    for v in git_versions(base, kind) + _recorded(engine, kind):
        seen = found.get(v.digest)
        if seen is None:
            found[v.digest] = v
        elif v.origin not in seen.origin:  # one text, two sightings: dated by the earlier, both named
            first, second = (seen, v) if seen.at <= v.at else (v, seen)
            found[v.digest] = dataclasses.replace(first, origin=f"{first.origin}; {second.origin} "
                                                                f"{second.at:%Y-%m-%d %H:%M}")
    if current and current_digest not in found:
        found[current_digest or ""] = Version(kind, current_digest or "", _version_of(current[0]),
                                              utcnow(), "the files on disk (not yet recorded)", *current)
    ordered = sorted(found.values(), key=lambda v: v.at, reverse=True)
    return [dataclasses.replace(v, current=v.digest == current_digest) for v in ordered]


def _recorded(engine: Engine, kind: str) -> list[Version]:
    with session(engine) as s:
        rows = s.scalars(select(MappingVersionRow).where(MappingVersionRow.kind == kind)
                         .order_by(MappingVersionRow.first_seen_at))
        return [Version(kind, r.digest, r.version, r.first_seen_at, "first seen by the service", r.spec_text,
                        r.people_text) for r in rows]


def find(found: list[Version], short: str) -> Version:
    for v in found:
        if short and v.digest.startswith(short):
            return v
    raise UnknownVersion(f"There is no version {short!r} of this mapping.")


#: Role (resource) settings besides its rules; review.diff compares rules, these complete the picture.
ROLE_FIELDS = ("type", "profile", "why", "scope", "for_each", "key", "when", "person", "template", "narrative")


def compare(old: Version, new: Version) -> list[Change]:
    """The rules added, removed and changed from `old` to `new`, then the resources' own settings."""
    before, after = load(old), load(new)
    return diff(before, after) + role_changes(before, after)


def role_changes(old: specs.Spec, new: specs.Spec) -> list[Change]:
    was, now = {r.role: r for r in old.roles}, {r.role: r for r in new.roles}
    out = [Change("role-added", f"{now[n].type} ({n})", now[n].why) for n in now.keys() - was.keys()]
    out += [Change("role-removed", f"{was[n].type} ({n})", was[n].why) for n in was.keys() - now.keys()]
    for name in sorted(was.keys() & now.keys()):
        for attr in ROLE_FIELDS:
            a, b = _plain(getattr(was[name], attr)), _plain(getattr(now[name], attr))
            if a != b:
                out.append(Change("role-changed", f"{now[name].type} ({name})", f"{attr}: {a} → {b}"))
    return sorted(out, key=lambda c: (c.kind, c.where, c.detail))


def _plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, specs.Narrative):
        return f"{value.title!r} with lines {list(value.lines)}"
    return repr(getattr(value, "text", value))


def load(v: Version) -> specs.Spec:
    """A version's specification, parsed as the engine would parse it."""
    try:
        people = yaml.safe_load(v.people_text) if v.people_text else {}
        templates: dict[str, dict[str, Any]] = (people or {}).get("templates") or {}
        return specs.parse(yaml.safe_load(v.spec_text), f"{v.kind} {v.short}", templates)
    except (yaml.YAMLError, specs.SpecError, AttributeError, TypeError) as exc:
        raise HistoryError(f"Version {v.short} of the {v.kind} mapping does not load: {exc}") from None


# --- git ---------------------------------------------------------------------------------------

def git_versions(folder: Path, kind: str) -> list[Version]:
    """The committed versions of `kind`'s file, when `folder` is in a git checkout; else none."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    name = _file_for(folder, kind)
    if top is None or name is None:
        return []
    head = _git(folder, "rev-parse", "HEAD")
    if head is None:
        return []
    root = Path(top.strip()).resolve()
    prefix = folder.resolve().relative_to(root).as_posix()
    return list(_git_versions(str(root), prefix, name, kind, head.strip()))


def _file_for(folder: Path, kind: str) -> str | None:
    for path in folder.glob("*.yaml"):
        if path.name != PEOPLE and _kind_of(path.read_text(encoding="utf-8"), path.name) == kind:
            return path.name
    return None


@lru_cache(maxsize=32)
def _git_versions(root: str, prefix: str, name: str, kind: str, head: str) -> tuple[Version, ...]:
    """Cached per HEAD: the history only changes with a new commit. Paths are from the checkout's top."""
    spec_path, people_path = f"{prefix}/{name}", f"{prefix}/{PEOPLE}"
    listing = _git(Path(root), "log", f"-{GIT_LIMIT}", "--format=%H%x09%cI%x09%s", head, "--", spec_path,
                   people_path)
    out: list[Version] = []
    for line in (listing or "").splitlines():
        sha, when, subject = line.split("\t", 2)
        text = _git(Path(root), "show", f"{sha}:{spec_path}")
        if text is None:  # the kind's file did not exist yet at this commit
            continue
        people = _git(Path(root), "show", f"{sha}:{people_path}") or ""
        at = datetime.fromisoformat(when).astimezone(UTC).replace(tzinfo=None)
        out.append(Version(kind, digest(text, people), _version_of(text), at, f"commit {sha[:7]}: {subject}",
                           text, people))
    return tuple(out)


def _git(folder: Path, *args: str) -> str | None:
    """git's output, or None when git is missing, this is no checkout, or git fails."""
    exe = shutil.which("git")
    if exe is None or not folder.is_dir():
        return None
    try:
        done = subprocess.run([exe, "-C", str(folder), *args], capture_output=True, text=True,  # noqa: S603
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("git %s failed: %s", args[0], exc)
        return None
    return done.stdout if done.returncode == 0 else None
