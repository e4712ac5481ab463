"""Tables: records (the current version) and record_versions (every version, never overwritten)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    __tablename__ = "records"
    __table_args__ = (
        # Race-free idempotency: the database, not a search-then-insert, refuses a second copy.
        UniqueConstraint("kind", "source", "external_id", name="uq_records_identity"),
        Index("ix_records_kind_patient", "kind", "patient_value", "patient_system"),
        Index("ix_records_kind_clinical_at", "kind", "clinical_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str] = mapped_column(String(200), nullable=False)
    external_id: Mapped[str] = mapped_column(String(200), nullable=False)
    patient_system: Mapped[str] = mapped_column(String(500), nullable=False)
    patient_value: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The record's clinical instant in UTC (session start, onset, plan start): what date filters use.
    clinical_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


class RecordVersionRow(Base):
    __tablename__ = "record_versions"

    record_pk: Mapped[int] = mapped_column(ForeignKey("records.pk", ondelete="RESTRICT"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
