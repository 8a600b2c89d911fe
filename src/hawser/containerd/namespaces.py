"""containerd.services.namespaces.v1.Namespaces: the namespaces of hawser's
store, the same ones the CLI (``hawser -n``) and the CRI (``k8s.io``) use.
Create, Get, List, Update (labels, by field mask) and Delete (refused while
the namespace holds anything)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import empty_pb2

from hawser.containerd._api.services.namespaces.v1 import namespace_pb2 as pb
from hawser.containerd._api.services.namespaces.v1 import namespace_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.containerd.events import record, request_namespace
from hawser.errors import InvalidArgument
from hawser.metadata import Namespace, NamespaceStore


def _message(namespace: Namespace) -> pb.Namespace:
    return pb.Namespace(name=namespace.name, labels=dict(namespace.labels))


def updated_labels(have: Mapping[str, str], want: Mapping[str, str], paths: list[str]) -> dict[str, str]:
    """Labels after an update with a field mask, as containerd applies one:
    no mask or ``labels`` replaces them all; ``labels.<key>`` sets that key
    (or removes it when the request's value is empty)."""
    if not paths or "labels" in paths:
        return {k: v for k, v in want.items() if v}
    labels = dict(have)
    for path in paths:
        if not path.startswith("labels."):
            raise InvalidArgument(f"cannot update {path!r} of a namespace: only labels change")
        key = path[len("labels."):]
        if want.get(key):
            labels[key] = want[key]
        else:
            labels.pop(key, None)
    return labels


class Namespaces(namespace_pb2_grpc.NamespacesServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    @property
    def _store(self) -> NamespaceStore:
        return self._deps.store.metadata.namespaces

    async def Get(self, request: pb.GetNamespaceRequest, context: Context) -> pb.GetNamespaceResponse:
        async def work() -> pb.GetNamespaceResponse:
            found = await self._deps.lookup(self._store.get, request.name)
            return pb.GetNamespaceResponse(namespace=_message(found))

        return await serve(context, "Get", work())

    async def List(self, request: pb.ListNamespacesRequest, context: Context) -> pb.ListNamespacesResponse:
        async def work() -> pb.ListNamespacesResponse:
            wanted = parse_filters([request.filter]) if request.filter else parse_filters([])
            every = await self._deps.blocking(self._store.list)
            return pb.ListNamespacesResponse(namespaces=[
                _message(n) for n in every
                if wanted.matches(labels_adaptor({"name": n.name}, dict(n.labels)))])

        return await serve(context, "List", work())

    async def Create(self, request: pb.CreateNamespaceRequest, context: Context) -> pb.CreateNamespaceResponse:
        async def work() -> pb.CreateNamespaceResponse:
            made = await self._deps.blocking(self._store.create, request.namespace.name,
                                             labels=dict(request.namespace.labels))
            await record(self._deps, "namespace", "create", namespace=request_namespace(context, made.name),
                         name=made.name, labels=made.labels)
            return pb.CreateNamespaceResponse(namespace=_message(made))

        return await serve(context, "Create", work())

    async def Update(self, request: pb.UpdateNamespaceRequest, context: Context) -> pb.UpdateNamespaceResponse:
        async def work() -> pb.UpdateNamespaceResponse:
            name = request.namespace.name
            have = await self._deps.blocking(self._store.get, name)
            labels = updated_labels(have.labels, request.namespace.labels, list(request.update_mask.paths))
            updated = await self._deps.blocking(self._store.update, name, labels=labels)
            await record(self._deps, "namespace", "update", namespace=request_namespace(context, name), name=name,
                         labels=updated.labels)
            return pb.UpdateNamespaceResponse(namespace=_message(updated))

        return await serve(context, "Update", work())

    async def Delete(self, request: pb.DeleteNamespaceRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            await self._deps.blocking(self._store.delete, request.name)
            await record(self._deps, "namespace", "remove", namespace=request_namespace(context, request.name),
                         name=request.name)
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())
