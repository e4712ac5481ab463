"""How the console writes times and counts: every time in the server's local zone with its UTC offset (stored
times are naive UTC), ages for people (`3 min`), and counted nouns that agree (`1 error, 2 warnings`)."""
from __future__ import annotations

from datetime import UTC, datetime

from service.admin.dashboard import age
from service.store.records import utcnow
from service.web.admin import bp


@bp.app_template_filter("at")
def at(moment: datetime | str | None, seconds: bool = False) -> str:
    """`2026-12-05 02:14 +01:00`: a stored (naive UTC) or ISO time in the local zone, with its offset."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return str(moment)
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    local = aware.astimezone()
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "")) + f" {offset[:3]}:{offset[3:]}"


@bp.app_template_filter("clinical")
def clinical(moment: datetime) -> str:
    """`2026-03-19 09:40 -05:00`: a clinical time in the clinic's own offset, as the record gives it (a time
    without one is stored UTC: it is shown in the server's zone, with its offset too)."""
    if moment.tzinfo is None:
        return at(moment)
    offset = moment.strftime("%z") or "+0000"
    return moment.strftime("%Y-%m-%d %H:%M") + f" {offset[:3]}:{offset[3:5]}"


@bp.app_template_filter("ago")
def ago(moment: datetime | None) -> str:
    """How long ago a stored (naive UTC) time was: `3 min`, `2 h 5 min`."""
    return age(utcnow(), moment) if moment is not None else "—"


@bp.app_template_global()
def now_utc() -> datetime:
    """Now, as stored times are written (naive UTC): templates compare due times with it."""
    return utcnow()


@bp.app_template_filter("counted")
def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`1 error`, `2 errors`, `0 errors` (`plural` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
