"""Facts about this installation, such as the event log's epoch.

The epoch names one lineage of event offsets: a restored or recreated database gets a new one, so
a client resuming from an offset of another lineage is told `recovered: false` instead of being
handed someone else's events.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base


class SystemMeta(Base):
    __tablename__ = "system_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
