"""The persisted model: one module per aggregate. Import models from here."""

from frontdesk.models.access import API_KEY_SCOPES, OPERATOR_ROLES, ApiKey, Operator
from frontdesk.models.audit import AuditEntry, OperatorSession
from frontdesk.models.base import Base, utcnow
from frontdesk.models.channels import Channel, InboundReceipt
from frontdesk.models.conversation import Conversation, Message, message_public
from frontdesk.models.errors import ERROR_SOURCES, ErrorGroup
from frontdesk.models.event import EventRecord
from frontdesk.models.jobs import Job
from frontdesk.models.knowledge import KnowledgeChunk, KnowledgeDocument
from frontdesk.models.lead import Lead
from frontdesk.models.notifications import Notification, NotificationPreference
from frontdesk.models.site import Site
from frontdesk.models.system import SystemMeta
from frontdesk.models.visitor import RefreshToken, Visitor
from frontdesk.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "API_KEY_SCOPES",
    "ERROR_SOURCES",
    "OPERATOR_ROLES",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Channel",
    "Conversation",
    "ErrorGroup",
    "EventRecord",
    "InboundReceipt",
    "Job",
    "KnowledgeChunk",
    "KnowledgeDocument",
    "Lead",
    "Message",
    "Notification",
    "NotificationPreference",
    "Operator",
    "OperatorSession",
    "RefreshToken",
    "Site",
    "SystemMeta",
    "Visitor",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "message_public",
    "utcnow",
]
