"""Strawberry's Channels GraphQL WebSocket consumer, made aware of channelserver's drain.

Use :class:`GraphQLWSConsumer` wherever you would use ``strawberry.channels.GraphQLWSConsumer``::

    from channelserver.strawberry import GraphQLWSConsumer

    websocket_urlpatterns = [path("graphql", GraphQLWSConsumer.as_asgi(schema=schema))]

Under channelserver, a shutdown, reload or worker recycle starts a *drain*
(``scope["extensions"]["channelserver.drain"]``, see :mod:`channelserver.server.drain`).
This consumer then, for both ``graphql-transport-ws`` and the legacy ``graphql-ws``:

- refuses new operations with a GraphQL error whose message is :data:`RESTARTING_MESSAGE`
  and whose ``extensions.code`` is :data:`RESTARTING_CODE` (an ``error`` message for that
  operation id), so the client learns at once instead of waiting on silence;
- lets the queries, mutations and subscriptions already running finish: each one holds
  the connection open through the extension from the moment it is accepted until its task
  is done (its last result and ``complete`` sent);
- and when the last of them is done, the server closes the connection with 1012
  (Service Restart), which standard clients answer by reconnecting, to a live worker.
  Operations still running at ``graceful_timeout`` are closed with 1012 by the server
  regardless; their resolvers' ``finally`` blocks run as the consumer shuts down.

Under any other server (no extension in the scope) it behaves exactly like Strawberry's
consumer: every override below falls through to the parent when the extension is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from graphql import GraphQLError, GraphQLFormattedError
from strawberry.channels import GraphQLWSConsumer as StrawberryGraphQLWSConsumer
from strawberry.http.typevars import Context, RootValue
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ErrorMessage as TransportErrorMessage
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ErrorMessage as LegacyErrorMessage
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage

from .errors import ClientDisconnected
from .server.drain import DRAIN_EXTENSION

__all__ = [
    "DRAIN_EXTENSION",
    "RESTARTING_CODE",
    "RESTARTING_MESSAGE",
    "DrainingGraphQLTransportWSHandler",
    "DrainingGraphQLWSHandler",
    "GraphQLWSConsumer",
    "restarting_error",
]

#: The message of the error a new operation gets while the server drains.
RESTARTING_MESSAGE = "server is restarting; retry on a new connection"
#: Its ``extensions.code``, for clients that branch on codes rather than text.
RESTARTING_CODE = "SERVER_RESTARTING"


def restarting_error() -> GraphQLFormattedError:
    """The formatted GraphQL error a refused operation gets."""
    return GraphQLError(RESTARTING_MESSAGE, extensions={"code": RESTARTING_CODE}).formatted


def drain_extension(scope: dict[str, Any]) -> dict[str, Any] | None:
    """The ``channelserver.drain`` extension of ``scope``; None under another server."""
    extensions = scope.get("extensions") or {}
    ext = extensions.get(DRAIN_EXTENSION)
    return ext if isinstance(ext, dict) and "started" in ext and "hold" in ext else None


class _DrainSupport:
    """What both protocol handlers share: is the drain on, and hold the connection while a task runs."""

    view: Any

    @property
    def drain(self) -> dict[str, Any] | None:
        return drain_extension(self.view.scope)

    @property
    def draining(self) -> bool:
        """True once the server began to drain; new operations are refused from then on."""
        drain = self.drain
        return drain is not None and drain["started"].is_set()

    def hold_while_running(self, task: asyncio.Task[Any] | None) -> None:
        """Keep the connection open until ``task`` is done.

        The hold is taken now, synchronously, while the operation is being accepted, so a
        drain that starts before the task first runs still finds the connection busy. It
        is released by the task's done-callback, which runs however the task ends
        (returned, raised, cancelled), so a hold can never outlive its operation.
        """
        drain = self.drain
        if drain is None or task is None or task.done():
            return
        hold = drain["hold"]()
        hold.__enter__()
        task.add_done_callback(lambda _task: hold.__exit__(None, None, None))


class DrainingGraphQLTransportWSHandler(_DrainSupport, BaseGraphQLTransportWSHandler[Context, RootValue]):
    """``graphql-transport-ws`` with the drain: refuse new ``subscribe``, hold the running ones."""

    async def handle_task_exception(self, error: Exception) -> None:
        """A client that left mid-operation is not an error in the operation: channelserver's
        ``send()`` raises :class:`~channelserver.errors.ClientDisconnected` (as ASGI asks), and
        Strawberry would log a traceback for every such client. Say it in one debug line."""
        if isinstance(error, ClientDisconnected):
            self.task_logger.debug("Operation ended, its client left: %s", error)
            return
        await super().handle_task_exception(error)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        operation_id = message["id"]
        known = operation_id in self.operations
        # Protocol errors (not acknowledged, duplicate id) keep Strawberry's answers.
        if self.draining and self.connection_acknowledged and not known:
            refusal: TransportErrorMessage = {"id": operation_id, "type": "error", "payload": [restarting_error()]}
            await self.send_message(refusal)
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(operation_id)
        if operation is not None and not known:
            self.hold_while_running(operation.task)


class DrainingGraphQLWSHandler(_DrainSupport, BaseGraphQLWSHandler[Context, RootValue]):
    """Legacy ``graphql-ws`` (subscriptions-transport-ws) with the drain: refuse new
    ``start`` with ``error`` (GQL_ERROR), hold the running ones."""

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """Strawberry's operation task; a client that left mid-operation ends it quietly.

        Strawberry lets the send()'s :class:`~channelserver.errors.ClientDisconnected` escape
        the task, which has then already removed itself from ``tasks``: nothing retrieves the
        exception, and asyncio logs "Task exception was never retrieved" with a traceback
        (keeping the frames alive until then) for every client that vanished.
        """
        with contextlib.suppress(ClientDisconnected):
            await super().handle_async_results(operation_id, query, operation_name, variables)

    async def handle_start(self, message: StartMessage) -> None:
        operation_id = message["id"]
        if self.draining and self.connection_acknowledged:
            refusal: LegacyErrorMessage = {"type": "error", "id": operation_id, "payload": restarting_error()}
            await self.send_message(refusal)
            return
        await super().handle_start(message)
        self.hold_while_running(self.tasks.get(operation_id))


class GraphQLWSConsumer(StrawberryGraphQLWSConsumer):
    """Strawberry's GraphQL WebSocket consumer that lets running operations finish when
    channelserver drains, refuses new ones with a clear error, then leaves with 1012.

    Subclass it as you would Strawberry's (``get_context``, ``on_ws_connect``, ...); to
    customise the protocol handlers, subclass :class:`DrainingGraphQLTransportWSHandler` /
    :class:`DrainingGraphQLWSHandler` and set them as ``graphql_transport_ws_handler_class``
    / ``graphql_ws_handler_class``.
    """

    graphql_transport_ws_handler_class = DrainingGraphQLTransportWSHandler[Any, Any]
    graphql_ws_handler_class = DrainingGraphQLWSHandler[Any, Any]

    @property
    def draining(self) -> bool:
        """True once channelserver began to drain this worker."""
        ext = drain_extension(self.scope)
        return ext is not None and ext["started"].is_set()
