"""The app's Flask class (service/web/application.py): whether a hook or view is a coroutine function is asked once
per function, and Flask's answer is what it gives."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from service.web.application import App


def hook() -> str:
    return "sync"


class Holder:
    def method(self) -> str:
        return "bound"


def test_a_function_is_asked_once_and_given_back_as_flask_gives_it(monkeypatch: Any) -> None:
    app = App(__name__)
    asked: list[Any] = []
    flask_ensure_sync = App.__mro__[1].ensure_sync

    def counting(self: App, func: Any) -> Any:
        asked.append(func)
        return flask_ensure_sync(self, func)

    monkeypatch.setattr(App.__mro__[1], "ensure_sync", counting)
    assert app.ensure_sync(hook) is hook and app.ensure_sync(hook) is hook
    assert asked == [hook]  # the second time from memory
    holder = Holder()
    assert app.ensure_sync(holder.method)() == "bound" and app.ensure_sync(holder.method)() == "bound"
    assert asked == [hook, holder.method, holder.method]  # bound methods (made anew each access) are not kept
    assert list(app._synced) == [hook]


def test_a_request_runs_every_hook_of_the_app() -> None:
    app = App(__name__)
    ran: list[str] = []
    app.before_request(lambda: ran.append("before"))
    app.after_request(lambda response: ran.append("after") or response)
    app.route("/x")(lambda: "x")
    client = FlaskClient(app)  # Flask's own: the suite's (tests/credentials.py) needs the service's runtime
    for _ in range(2):
        assert client.get("/x").get_data(as_text=True) == "x"
    assert ran == ["before", "after", "before", "after"]
