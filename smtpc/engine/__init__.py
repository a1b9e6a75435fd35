"""The sans-I/O protocol engine: bytes in, replies out, no sockets or clocks."""

from .replies import Reply, ReplyCode, ReplyReader
from .session import DRAIN, READ, START_TLS, Session, State, Step, Steps
from .transaction import Envelope, RecipientResult, TransactionResult, run_transaction

__all__ = [
    "DRAIN",
    "READ",
    "START_TLS",
    "Envelope",
    "RecipientResult",
    "Reply",
    "ReplyCode",
    "ReplyReader",
    "Session",
    "State",
    "Step",
    "Steps",
    "TransactionResult",
    "run_transaction",
]
