"""Admin console fixtures: an account and a signed-in test client."""
from __future__ import annotations

import pytest
from admin.support import PASSWORD, USER, sign_in
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import Accounts


@pytest.fixture
def accounts(app: Flask) -> Accounts:
    found = Accounts(app.extensions["kfhir"].engine)
    found.create(USER, PASSWORD)
    return found


@pytest.fixture
def admin(client: FlaskClient, accounts: Accounts) -> FlaskClient:
    """The test client, signed in as USER."""
    response = sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
