"""Oversight fixtures: the products tests' served component, a regulator, a local SMTP server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from tests.conftest import Person, World
from tests.products import conftest as _products
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance

# The review, component and serving fixtures are shared here.
registry = _products.registry
cast = _products.cast
approved_spec = _products.approved_spec
served = _products.served

REGULATOR_EMAIL = "jianguan@zz-data.gov.example"
BANK_EMAIL = "security@bank.example"


def actor_of(instance: Instance, username: str) -> Actor:
    """The actor of a user, as the services see it."""
    with instance.sessions() as s:
        return identity.actor_for(identity.find_user(s, username))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Regulator:
    """A regulator viewer with an e-mail address."""

    person: Person
    actor: Actor


@pytest.fixture
def regulator(instance: Instance, world: World) -> Regulator:
    """The city data authority's viewer (with an e-mail address)."""
    p = world.user(Role.REGULATOR_VIEWER, org_name="市数据局")
    with instance.sessions() as s:
        u = identity.find_user(s, p.username)
        u.email = REGULATOR_EMAIL
        s.commit()
    return Regulator(p, actor_of(instance, p.username))


def set_org_email(instance: Instance, org_id: int, address: str) -> None:
    """Give an organization a contact address."""
    with instance.sessions() as s:
        org = s.get(Organization, org_id)
        org.contact_email = address
        s.commit()


def org_named(instance: Instance, name: str) -> int:
    """The id of the organization with the name."""
    with instance.sessions() as s:
        return s.scalar(select(Organization.id).where(Organization.name == name))


@dataclass
class Mailbox:
    """What the local SMTP server received."""

    host: str
    port: int
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook: keep the message."""
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """An SMTP server on a free 127.0.0.1 port that keeps every message it gets."""
    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
