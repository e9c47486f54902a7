"""The suite's name for the event subscriber: its one home is services/stack_events.py (the local launcher
hands it out too, and services may not import the harness)."""
from services.stack_events import EventSubscriber, EventTimeout, Predicate, find_gaps, in_order  # noqa: F401
