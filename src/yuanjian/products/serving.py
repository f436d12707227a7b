"""The serving runtime of one server process: who is calling, under which licence, what to return.

Credential and licence state and the served version of each component are cached for at most
``ttl`` seconds (0.5 by default), so a suspension, revocation, rotation or new version is in
force in every process within a second without a database read per call. Lookups read the
read-optimized store; every call, allowed or denied, goes through the group-commit recorder and
is answered only once its audit event is durable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from yuanjian.components.models import Component, ComponentVersion
from yuanjian.db.session import make_engine, make_sessionmaker
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.products import credentials, metering
from yuanjian.products import service as products
from yuanjian.products import store as stores
from yuanjian.products.models import ClientCredential, Licence
from yuanjian.products.writer import WriterClient, WriterUnavailable

log = logging.getLogger("yuanjian.serving")

MAX_BATCH_KEYS = 1000
SWITCH_INTERVAL = 0.0005
_RDIGITS = re.compile(r"\D*(\d{3,})")


class ServingDenied(Exception):
    """A call refused with a stable error code."""

    def __init__(
        self, code: str, status: int, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.retry_after = code, status, message, retry_after


STATUS = {
    "invalid_token": 401,
    "credential_revoked": 401,
    "organization_suspended": 403,
    "no_licence": 403,
    "licence_suspended": 403,
    "licence_revoked": 403,
    "licence_pending": 403,
    "expired": 403,
    "wrong_purpose": 403,
    "out_of_scope": 403,
    "ip_not_allowed": 403,
    "mode_not_licensed": 403,
    "component_suspended": 403,
    "unknown_key": 404,
    "not_found": 404,
    "over_quota": 429,
    "rate_limited": 429,
    "bad_request": 400,
    "batch_too_large": 400,
    "store_unavailable": 503,
    "gone": 410,
}


def denied(code: str, message: str, **kw: Any) -> ServingDenied:
    """A ServingDenied with the status of its code."""
    return ServingDenied(code, STATUS[code], message, **kw)


@dataclass(frozen=True)
class LicenceState:
    """A licence as the serving runtime checks it."""

    id: int
    status: str
    purpose: str
    valid_from: date
    valid_to: date
    scopes: dict[str, tuple[str, ...]]  # component code → licensed fields
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    limits: metering.Limits
    batch_records: int
    delivery_modes: tuple[str, ...]


@dataclass(frozen=True)
class ClientState:
    """A credential, its organization and the licence that stands for its product now."""

    credential_id: int
    client_id: str
    generation: int
    status: str
    org_id: int
    org_status: str
    spec_id: int
    licence: LicenceState | None


@dataclass(frozen=True)
class ServedVersion:
    """The version of a component that is served now, and its store."""

    component: str
    subject_type: str
    version_id: int
    number: int
    data_date: str
    store: stores.Store | None
    parquet: str | None
    output_key: str | None
    schema: tuple[str, ...]


@dataclass
class Authorized:
    """What an authorized call may do."""

    client: ClientState
    licence: LicenceState
    served: ServedVersion
    fields: tuple[str, ...]
    actor: Actor


def _licence_state(lic: Licence) -> LicenceState:
    nets = []
    for r in lic.ip_ranges or []:
        try:
            nets.append(ipaddress.ip_network(r, strict=False))
        except ValueError:
            continue
    return LicenceState(
        id=lic.id,
        status=lic.status,
        purpose=lic.purpose,
        valid_from=lic.valid_from,
        valid_to=lic.valid_to,
        scopes={c["code"]: tuple(c.get("fields", [])) for c in lic.components},
        networks=tuple(nets),
        limits=metering.Limits(lic.calls_per_day, lic.subjects_per_day, lic.rate_per_second),
        batch_records=lic.batch_records,
        delivery_modes=tuple(lic.delivery_modes or ["api"]),
    )


def recorder_sessions(
    instance: Any, connections: int = 2
) -> tuple[Engine | None, sessionmaker[Session]]:
    """Sessions for group commits: on PostgreSQL, their own small pool without pre-ping.

    The instance's pool pings every connection it hands out (a round trip); the recorder
    checks one out per group commit, and the ping was a fifth of its time under load. A
    connection that dropped fails one group commit (its calls fail closed, 503) and is
    replaced at the next checkout.
    """
    if instance.engine.dialect.name != "postgresql":
        return None, instance.sessions
    engine = make_engine(
        instance.engine.url.render_as_string(hide_password=False),
        pool_pre_ping=False,
        pool_size=connections - 1,
        max_overflow=1,
    )
    return engine, make_sessionmaker(engine, dict(instance.sessions.kw.get("info") or {}))


def writer_mode(settings: Any, dialect: str) -> str:
    """``process`` (the host's writer) or ``thread`` (a recorder in this process)."""
    mode = settings.serving_audit_writer
    if mode == "auto":
        # The writer pays off where server processes share a database server; an embedded
        # SQLite file serializes its writers anyway. Abstract sockets are Linux's.
        mode = "process" if dialect == "postgresql" and sys.platform == "linux" else "thread"
    return mode


class Recorder:
    """Where this process's serving calls are committed: the host's audit writer process
    (``yuanjian.products.writer``), or a recorder thread of this process when the settings say
    so or no writer can be reached (then the writer is tried again after ``RETRY_SECONDS``)."""

    RETRY_SECONDS = 30.0

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.mode = writer_mode(instance.settings, instance.engine.dialect.name)
        self.writer: WriterClient | None = None
        if self.mode == "process":
            self.writer = WriterClient(
                instance.settings, stores.ensure_serving_key(instance.settings.data_dir)
            )
        self._local: metering.CallRecorder | None = None
        self._local_engine: Engine | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def local(self) -> metering.CallRecorder:
        """This process's recorder thread (made on first use)."""
        with self._lock:
            if self._local is None:
                self._local_engine, sessions = recorder_sessions(self.instance)
                self._local = metering.CallRecorder(
                    sessions, linger=self.instance.settings.commit_linger(writer_process=False)
                )
                # The recorder thread waits on the database a few times per group commit and
                # must win the GIL back from the busy event loop each time; the default 5 ms
                # switch interval would add up to that much per round trip to every call.
                if sys.getswitchinterval() > SWITCH_INTERVAL:
                    sys.setswitchinterval(SWITCH_INTERVAL)
            return self._local

    async def submit_async(self, event: metering.CallEvent) -> metering.Decision:
        """Commit a call's audit event (and its metering); its decision once durable."""
        writer = self.writer
        if writer is not None and time.monotonic() >= self._retry_at:
            try:
                return await writer.submit_async(event)
            except WriterUnavailable as exc:
                # Nothing was sent: the call goes to this process's recorder instead.
                log.error("serving audit writer unavailable, recording in-process: %s", exc)
                self._retry_at = time.monotonic() + self.RETRY_SECONDS
        return await self.local().submit_async(event)

    def stop(self) -> None:
        """Answer what is in flight, then stop."""
        if self.writer is not None:
            self.writer.stop()
        with self._lock:
            if self._local is not None:
                self._local.stop()
            if self._local_engine is not None:
                self._local_engine.dispose()


class ServingRuntime:
    """Caches, the store handles and the recorder of one server process."""

    def __init__(self, instance: Any, *, ttl: float = 0.5) -> None:
        self.instance = instance
        self.ttl = ttl
        self.data_dir: Path = instance.settings.data_dir
        self.token_key = credentials.token_key(instance.settings.load_secret_key())
        self.recorder = Recorder(instance)
        self._serving_key: bytes | None = None
        self._clients: dict[int, tuple[float, ClientState | None]] = {}
        self._versions: dict[str, tuple[float, ServedVersion | None, str | None]] = {}
        self._stores: dict[str, stores.Store] = {}
        self._last_key: dict[tuple[int, int], int] = {}
        self._tokens: dict[str, credentials.TokenClaims] = {}
        self._rereads: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self._hasher: stores.SubjectHasher | None = None
        self._lock = threading.Lock()
        self.delivery_threads: list[threading.Thread] = []

    @property
    def serving_key(self) -> bytes:
        """The platform's subject-hash key."""
        if self._serving_key is None:
            self._serving_key = stores.ensure_serving_key(self.data_dir)
        return self._serving_key

    def close(self) -> None:
        """Stop the recorder (committing what is queued) and close the stores."""
        self.recorder.stop()
        for s in self._stores.values():
            s.close()

    # ------------------------------------------------------------ cached state

    def client(self, credential_id: int) -> ClientState | None:
        """The credential's state, read at most every ``ttl`` seconds."""
        now = time.monotonic()
        hit = self._clients.get(credential_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with self.instance.sessions() as s:
            state = self._load_client(s, credential_id)
        self._clients[credential_id] = (now, state)
        return state

    async def client_async(self, credential_id: int) -> ClientState | None:
        """``client`` without blocking the event loop when the cache must be re-read."""
        hit = self._clients.get(credential_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return await self._reread(("client", credential_id), self.client, credential_id)

    async def served_async(self, code: str) -> tuple[ServedVersion | None, str | None]:
        """``_served`` without blocking the event loop when the cache must be re-read."""
        hit = self._versions.get(code)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1], hit[2]
        return await self._reread(("served", code), self._served, code)

    async def _reread(self, slot: tuple[str, Any], load: Any, arg: Any) -> Any:
        """One re-read in a thread per expired entry; calls arriving meanwhile await it.

        Without this, every call that finds the entry expired starts its own re-read: under
        load, a dozen threads reading the same rows twice a second.
        """
        loop = asyncio.get_running_loop()
        pending = self._rereads.get(slot)
        if pending is not None and pending.get_loop() is loop:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Any] = loop.create_future()
        self._rereads[slot] = fut
        try:
            result = await asyncio.to_thread(load, arg)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved here; waiters re-raise it
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            if self._rereads.get(slot) is fut:
                del self._rereads[slot]

    def _load_client(self, s: Session, credential_id: int) -> ClientState | None:
        cred = s.get(ClientCredential, credential_id)
        if cred is None:
            return None
        org = s.get(Organization, cred.org_id)
        lic = products.current_licence(s, cred.spec_id)
        return ClientState(
            cred.id,
            cred.client_id,
            cred.generation,
            cred.status,
            cred.org_id,
            org.status if org else "suspended",
            cred.spec_id,
            _licence_state(lic) if lic is not None else None,
        )

    def served(self, code: str) -> ServedVersion | None:
        """The newest published version of a component, read at most every ``ttl`` seconds."""
        return self._served(code)[0]

    def component_status(self, code: str) -> str | None:
        """The component's status as last read (None if there is no such component)."""
        return self._served(code)[1]

    def _served(self, code: str) -> tuple[ServedVersion | None, str | None]:
        now = time.monotonic()
        hit = self._versions.get(code)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        with self.instance.sessions() as s:
            comp = s.scalar(select(Component).where(Component.code == code))
            v = None
            if comp is not None and comp.status == "active":
                v = s.scalar(
                    select(ComponentVersion)
                    .where(
                        ComponentVersion.component_id == comp.id,
                        ComponentVersion.status == "published",
                    )
                    .order_by(ComponentVersion.number.desc())
                    .limit(1)
                )
            state = None
            if v is not None:
                meta = v.metadata_ or {}
                name = meta.get("store")
                store = self._open_store(name) if name else None
                state = ServedVersion(
                    code,
                    comp.subject_type,
                    v.id,
                    v.number,
                    str(meta.get("data_date") or v.published_at.date().isoformat()),
                    store,
                    meta.get("output_path"),
                    meta.get("output_key"),
                    tuple(f["name"] for f in v.output_schema),
                )
        status = comp.status if comp is not None else None
        self._versions[code] = (now, state, status)
        return state, status

    def _open_store(self, name: str) -> stores.Store | None:
        with self._lock:
            st = self._stores.get(name)
            if st is None:
                try:
                    st = stores.Store(self.data_dir / name)
                except (stores.StoreError, OSError):
                    return None
                self._stores[name] = st
            return st

    # ------------------------------------------------------------ authorization

    def _claims(self, token: str) -> credentials.TokenClaims | None:
        """Verified claims of a token, remembered until it expires (tokens are reused)."""
        hit = self._tokens.get(token)
        if hit is not None:
            return hit if hit.expires >= time.time() else None
        claims = credentials.verify_token(self.token_key, token)
        if claims is not None:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[token] = claims
        return claims

    async def authenticate(
        self, authorization: str | None, *, request_id: str | None, ip: str | None
    ) -> tuple[ClientState, Actor]:
        """The client of a bearer token (raises ServingDenied with the actor it found)."""
        token = ""
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        claims = self._claims(token) if token else None
        if claims is None:
            raise denied("invalid_token", "a valid serving bearer token is required")
        state = await self.client_async(claims.credential_id)
        if state is None:
            raise denied("invalid_token", "a valid serving bearer token is required")
        if state.status != "active":
            raise denied("credential_revoked", "the client credential is revoked")
        if state.generation != claims.generation:
            raise denied("invalid_token", "the token was replaced by a rotation of the secret")
        actor = Actor(
            None,
            f"client:{state.client_id}",
            state.org_id,
            None,
            request_id=request_id,
            ip=ip,
            via="serving",
        )
        return state, actor

    async def authorize(
        self,
        state: ClientState,
        actor: Actor,
        *,
        component: str,
        purpose: str | None,
        fields: list[str] | None,
        ip: str | None,
        mode: str = "api",
        day: date | None = None,
    ) -> Authorized:
        """Check organization, licence, period, purpose, scope, client address and mode."""
        if state.org_status != "active":
            raise denied("organization_suspended", "the organization is suspended")
        lic = state.licence
        if lic is None:
            raise denied("no_licence", "the product holds no licence")
        if lic.status != "active":
            code = {
                "suspended": "licence_suspended",
                "revoked": "licence_revoked",
                "pending_agreement": "licence_pending",
            }.get(lic.status, "licence_revoked")
            raise denied(code, f"licence {lic.id} is {lic.status}")
        d = day or metering.today()
        if not lic.valid_from <= d <= lic.valid_to:
            raise denied("expired", f"licence {lic.id} is valid {lic.valid_from}..{lic.valid_to}")
        if not purpose:
            raise denied("wrong_purpose", "every call must declare its purpose")
        if purpose != lic.purpose:
            raise denied("wrong_purpose", f"licence {lic.id} is for purpose {lic.purpose!r}")
        if lic.networks:
            try:
                addr = ipaddress.ip_address(ip or "")
            except ValueError:
                addr = None
            if addr is None or not any(addr in n for n in lic.networks):
                raise denied("ip_not_allowed", "the client address is outside the licence")
        if mode not in lic.delivery_modes:
            raise denied("mode_not_licensed", f"licence {lic.id} does not allow {mode} delivery")
        scope = lic.scopes.get(component)
        if scope is None:
            raise denied("out_of_scope", f"component {component!r} is not in licence {lic.id}")
        chosen = tuple(fields) if fields else scope
        extra = [f for f in chosen if f not in scope]
        if extra:
            raise denied("out_of_scope", f"fields {', '.join(extra)} are not licensed")
        served, comp_status = await self.served_async(component)
        if comp_status is not None and comp_status != "active":
            raise denied("component_suspended", f"component {component!r} is {comp_status}")
        if served is None:
            raise denied("store_unavailable", f"component {component!r} has no served version")
        missing = [f for f in chosen if f not in served.schema]
        if missing:
            raise denied(
                "store_unavailable",
                f"version {served.number} of {component} lacks {', '.join(missing)}",
            )
        return Authorized(state, lic, served, chosen, actor)

    # ------------------------------------------------------------ keys

    def hash_keys(self, keys: list[Any], key_type: str) -> list[bytes]:
        """Keyed hashes of raw keys, or the given hashes checked (bad ones raise)."""
        out = []
        if self._hasher is None:
            self._hasher = stores.SubjectHasher(self.serving_key)
        hasher = self._hasher
        for i, k in enumerate(keys):
            if not isinstance(k, str | int) or isinstance(k, bool) or str(k).strip() == "":
                raise denied("bad_request", f"keys[{i}]: a key must be a non-empty string")
            if key_type == "hash":
                h = stores.parse_hash(str(k))
                if h is None:
                    raise denied("bad_request", f"keys[{i}]: not a 32-hex-digit subject hash")
                out.append(h)
            else:
                out.append(hasher(str(k)))
        return out

    def sequential(self, licence_id: int, keys: list[Any], key_type: str) -> int:
        """How many of the call's raw keys continue a numeric run (enumeration signal)."""
        if key_type != "raw":
            return 0
        # Identifiers (resident IDs, credit codes) end in a check character: the run that
        # enumerates is the serial number before it; plain numbers run to the end.
        best = 0
        for cut in (1, 0):
            nums = []
            for k in keys:
                text = str(k)
                if len(text) <= cut:
                    continue
                # Matching the reversed text finds the last digit run without a scan per start.
                m = _RDIGITS.match(text[len(text) - 1 - cut :: -1] if cut else text[::-1])
                if m:
                    nums.append(int(m.group(1)[::-1][-12:]))
            if not nums:
                continue
            slot = (licence_id, cut)
            last = self._last_key.get(slot)
            self._last_key[slot] = nums[-1]
            if len(nums) == 1:
                best = max(best, int(last is not None and 0 < abs(nums[0] - last) <= 2))
            else:
                best = max(best, metering.sequential_count(nums))
        return best

    # ------------------------------------------------------------ recording

    def event(
        self,
        actor: Actor,
        *,
        action: str = "component.call",
        outcome: str,
        code: str | None = None,
        auth: Authorized | None = None,
        client: ClientState | None = None,
        component: str | None = None,
        purpose: str | None = None,
        mode: str = "lookup",
        khashes: list[bytes] | None = None,
        found: int = 0,
        sequential: int = 0,
        records: int = 0,
        detail: dict[str, Any] | None = None,
    ) -> metering.CallEvent:
        """The call event for the recorder."""
        lic = auth.licence if auth else (client.licence if client else None)
        return metering.CallEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            code=code,
            licence_id=lic.id if lic else None,
            limits=lic.limits if (lic and auth) else None,
            component=component,
            version=auth.served.number if auth else None,
            purpose=purpose,
            mode=mode,
            khashes=khashes or [],
            found=found,
            sequential=sequential,
            records=records,
            detail=detail or {},
        )


def lookup_records(auth: Authorized, khashes: list[bytes]) -> dict[bytes, list[dict[str, Any]]]:
    """Records of the subjects, limited to the licensed fields."""
    store = auth.served.store
    if store is None:
        raise denied("store_unavailable", "the component's serving store is not available")
    if len(khashes) == 1:
        recs = store.get(khashes[0], auth.fields)
        return {khashes[0]: recs} if recs else {}
    return store.get_many(khashes, auth.fields)
