"""Batch deliveries: a watermarked file of licensed fields, produced in the background, once.

A licensee asks for the licensed fields of a key list or of the whole licensed scope (at most
the licence's records per delivery). The file carries a ``record_ref`` column: a keyed hash of
each subject under a key of that delivery alone, so every delivered file is distinct and the
leak tracer (``yuanjian samples trace FILE``) names the licence a leaked copy came from, from
the reference column or, when it was dropped, from any other cells only that delivery held.
The file can be downloaded once, within a window, and is removed after the download.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import update
from starlette.background import BackgroundTask

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.products import metering
from yuanjian.products import store as stores
from yuanjian.products.models import Delivery
from yuanjian.resources.store import fsync_dir

if TYPE_CHECKING:
    from yuanjian.identity.actor import Actor
    from yuanjian.products.serving import Authorized, ClientState, ServingRuntime

DOWNLOAD_HOURS = 24
WATERMARK = "record_ref"


def delivery_dict(d: Delivery) -> dict[str, Any]:
    """JSON form of a delivery (what its requester may see)."""
    return {
        "id": d.id,
        "licence_id": d.licence_id,
        "component": d.component_code,
        "purpose": d.purpose,
        "fields": d.fields,
        "scope": d.scope,
        "format": d.format,
        "status": d.status,
        "rows": d.rows,
        "sha256": d.sha256,
        "error": d.error,
        "requested_at": d.requested_at,
        "ready_at": d.ready_at,
        "expires_at": d.expires_at,
        "downloaded_at": d.downloaded_at,
        "download": f"/serve/v1/deliveries/{d.id}/file" if d.status == "ready" else None,
    }


def request(
    *,
    runtime: ServingRuntime,
    auth: Authorized,
    khashes: list[bytes] | None,
    fmt: str,
    purpose: str | None,
) -> Delivery:
    """Record (audited, metered) a delivery request and start producing its file."""
    from yuanjian.products.serving import denied

    lic = auth.licence
    n = (
        len(khashes)
        if khashes is not None
        else (auth.served.store.info.rows if auth.served.store else 0)
    )
    if n > lic.batch_records:
        raise denied(
            "over_quota",
            f"{n} records asked for; licence {lic.id} allows {lic.batch_records} per delivery",
        )
    if not auth.served.parquet or not Path(auth.served.parquet).is_file():
        raise denied("store_unavailable", "the component's output is not available")
    key = secrets.token_bytes(32)
    data_dir = runtime.data_dir
    with runtime.instance.sessions() as s:
        d = Delivery(
            licence_id=lic.id,
            org_id=auth.client.org_id,
            credential_id=auth.client.credential_id,
            component_code=auth.served.component,
            version_id=auth.served.version_id,
            purpose=lic.purpose,
            fields=list(auth.fields),
            scope="keys" if khashes is not None else "all",
            format=fmt,
            status="queued",
            key_sha256=hashlib.sha256(key).hexdigest(),
        )
        s.add(d)
        s.flush()
        if khashes is not None:
            kpath = data_dir / "deliveries" / str(d.id) / "keys.bin"
            kpath.parent.mkdir(parents=True, exist_ok=True)
            kpath.write_bytes(b"".join(khashes))
            d.key_hashes_path = str(kpath)
        ev = runtime.event(
            auth.actor,
            action="delivery.request",
            outcome="allowed",
            auth=auth,
            component=auth.served.component,
            purpose=purpose,
            mode="delivery",
            khashes=khashes or [],
            detail={"delivery_id": d.id, "scope": d.scope, "format": fmt},
        )
        decision = metering.commit_calls(s, [ev], commit=False)[0]
        if decision.outcome != "allowed":
            d.status, d.error = "refused", decision.code
        s.commit()
        s.refresh(d)
        s.expunge(d)
    if decision.outcome != "allowed":
        raise denied(decision.code or "over_quota", f"delivery refused: {decision.code}")
    t = threading.Thread(
        target=produce, args=(runtime, d.id, key, auth.actor), name=f"delivery-{d.id}", daemon=True
    )
    t.start()
    runtime.delivery_threads.append(t)
    return d


def produce(runtime: ServingRuntime, delivery_id: int, key: bytes, actor: Actor) -> None:
    """Write the delivery file atomically; a failure leaves no file and says why."""
    data_dir = runtime.data_dir
    with runtime.instance.sessions() as s:
        d = s.get(Delivery, delivery_id)
        d.status = "running"
        s.commit()
        served = runtime.served(d.component_code)
        out_dir = data_dir / "deliveries" / str(d.id)
        tmp = out_dir / f".partial-{secrets.token_hex(4)}"
        try:
            if served is None or served.version_id != d.version_id or not served.output_key:
                raise RuntimeError("the served version changed before the delivery was made")
            table = pq.read_table(served.parquet, columns=[served.output_key, *d.fields])
            keys = table.column(served.output_key).cast(pa.string()).to_pylist()
            skey = runtime.serving_key
            hashes = [stores.subject_hash(skey, k or "") for k in keys]
            if d.key_hashes_path:
                raw = Path(d.key_hashes_path).read_bytes()
                wanted = {raw[i : i + 16] for i in range(0, len(raw), 16)}
                mask = pa.array([h in wanted for h in hashes])
                table = table.filter(mask)
                hashes = [h for h in hashes if h in wanted]
            lic_rows = table.select(list(d.fields))
            refs = [hmac.new(key, h, hashlib.sha256).hexdigest()[:16] for h in hashes]
            out = lic_rows.append_column("subject_hash", pa.array([h.hex() for h in hashes]))
            out = out.append_column(WATERMARK, pa.array(refs, pa.string()))
            out_dir.mkdir(parents=True, exist_ok=True)
            if d.format == "csv":
                pacsv.write_csv(out, tmp)
            else:
                pq.write_table(out, tmp)
            with open(tmp, "rb+") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                os.fsync(fh.fileno())
            final = out_dir / f"delivery-{d.id}.{d.format}"
            os.replace(tmp, final)
            fsync_dir(out_dir)
            from yuanjian.components.samples import table_fingerprint

            fp_path = out_dir / "fingerprint.npy"
            np.save(fp_path, table_fingerprint([out]))
            d.status, d.rows, d.sha256 = "ready", out.num_rows, digest
            d.file_path, d.fingerprint_path = str(final), str(fp_path)
            d.ready_at = utcnow()
            d.expires_at = d.ready_at + timedelta(hours=DOWNLOAD_HOURS)
            usage = metering._usage_rows(s, {d.licence_id}, metering.today())[d.licence_id]
            usage.delivered_records += out.num_rows
            metering._store_usage(s, usage)
            audit.record(
                s,
                actor,
                "delivery.ready",
                object_type="licence",
                object_id=d.licence_id,
                detail={"delivery_id": d.id, "rows": out.num_rows, "sha256": digest},
            )
            s.commit()
        except Exception as exc:
            s.rollback()
            tmp.unlink(missing_ok=True)
            d = s.get(Delivery, delivery_id)
            d.status, d.error = "failed", f"{exc.__class__.__name__}: {exc}"[:2000]
            audit.record(
                s,
                actor,
                "delivery.ready",
                object_type="licence",
                object_id=d.licence_id,
                outcome="failed",
                detail={"delivery_id": d.id, "error": d.error},
            )
            s.commit()


def get_for_client(runtime: ServingRuntime, client: ClientState, delivery_id: int) -> Delivery:
    """A delivery of the client's organization (expired ones say so)."""
    from yuanjian.products.serving import denied

    with runtime.instance.sessions() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.org_id != client.org_id:
            raise denied("not_found", f"delivery {delivery_id} not found")
        if d.status in ("queued", "running") and d.requested_at < utcnow() - timedelta(hours=1):
            # Its producer died with its server process: say so rather than wait forever.
            d.status, d.error = "failed", "interrupted: the server stopped while producing it"
            s.commit()
        if d.status == "ready" and d.expires_at and d.expires_at < utcnow():
            d.status = "expired"
            if d.file_path:
                Path(d.file_path).unlink(missing_ok=True)
            s.commit()
        s.refresh(d)
        s.expunge(d)
        return d


def claim_download(
    runtime: ServingRuntime, client: ClientState, actor: Actor, delivery_id: int
) -> tuple[Path, Delivery]:
    """Mark a ready delivery downloaded (once, within its window) and return its file."""
    from yuanjian.products.serving import denied

    d = get_for_client(runtime, client, delivery_id)
    if d.status in ("queued", "running"):
        raise denied("not_found", f"delivery {d.id} is not ready yet ({d.status})")
    if d.status != "ready":
        why = {
            "downloaded": "it was already downloaded (a delivery is downloaded once)",
            "expired": "its download window has passed",
            "failed": f"it could not be produced ({d.error})",
            "refused": f"it was refused ({d.error})",
        }.get(d.status, d.status)
        raise denied("gone", f"delivery {d.id} is {d.status}: {why}")
    with runtime.instance.sessions() as s:
        done = s.execute(
            update(Delivery)
            .where(Delivery.id == d.id, Delivery.status == "ready")
            .values(status="downloaded", downloaded_at=utcnow())
        ).rowcount
        if done != 1:
            s.rollback()
            raise denied("gone", f"delivery {d.id} was already downloaded")
        audit.record(
            s,
            actor,
            "delivery.download",
            object_type="licence",
            object_id=d.licence_id,
            purpose=d.purpose,
            detail={"delivery_id": d.id, "rows": d.rows, "sha256": d.sha256},
        )
        s.commit()
    return Path(d.file_path or ""), d


def remove_after_download(path: Path) -> BackgroundTask:
    """Remove the delivered file once it has been sent."""
    return BackgroundTask(lambda: path.unlink(missing_ok=True))


def list_deliveries(session: Any, licence_id: int) -> list[Delivery]:
    """Deliveries of a licence, newest first."""
    from sqlalchemy import select

    return list(
        session.scalars(
            select(Delivery).where(Delivery.licence_id == licence_id).order_by(Delivery.id.desc())
        )
    )
