"""The layer pipeline shared by pull and import.

Every layer that is not unpacked yet is fetched in its own thread (bounded by
``max_concurrent``); its bytes are hashed and written to the content store
and, in the same pass, piped into an unpack worker process that decompresses
and applies them.  Workers are processes so that several layers really unpack
at once (the GIL would serialise tar parsing in threads).

Snapshotters that can rebase (overlayfs) unpack every layer into its own
parentless directory in parallel; the main thread then commits the layers in
order, each one as soon as its parent is committed, checking the layer
against its lowers first (a symlink planted by an earlier layer).  Others
(native) unpack in order onto a copy of the parent.

Two pulls sharing a layer, in one process or several, serialise on a lock per
chain ID: the second waits, then finds the snapshot committed and skips it.

The pipeline reports to a ``PullMeter`` (``_meter.py`` says what each stage
means): layers fetched or present, bytes downloaded, and the wall time of its
fetching, its unpack workers and its commits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from hawser import errors
from hawser._dataclass import dataclass
from hawser._failpoints import failpoint
from hawser.content import ContentStore
from hawser.errors import AlreadyExists, DataLoss, HawserError, Internal, InvalidArgument, NotFound
from hawser.host import FileLock
from hawser.images._apply import LowerNeeded
from hawser.images._chain import chain_ids
from hawser.images._lowers import check_implicit_dirs
from hawser.images._meter import COMMIT, FETCH, UNPACK, PullMeter
from hawser.images._progress import LayerProgress, ProgressSink
from hawser.images._source import BlobSource
from hawser.metadata import Metadata
from hawser.oci import Descriptor, Digest, ImageConfig, Manifest, media
from hawser.snapshots import ApplyTarget, Kind, Snapshotter

WORKER_TIMEOUT = 600.0


class _Aborted(Exception):
    """Another layer failed; this one stops early."""


@dataclass(frozen=True, slots=True)
class UnpackResult:
    diff_id: Digest
    size: int
    implicit_dirs: tuple[str, ...]


@dataclass(slots=True)
class _Applied:
    key: str
    result: UnpackResult | None  # None: LowerNeeded, redo on the parent
    lock: FileLock


class UnpackProcess:
    """One unpack worker (``python -m hawser.images._unpack_worker``) fed through a pipe."""

    def __init__(self, target: ApplyTarget, compression: str, *, allow_lower_needed: bool) -> None:
        args = [sys.executable, "-m", "hawser.images._unpack_worker", "--path", target.path,
                "--compression", compression]
        if target.overlay_whiteouts:
            args.append("--overlay")
        for lower in target.lowers:
            args += ["--lower", lower]
        if allow_lower_needed:
            args.append("--allow-lower-needed")
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=0, close_fds=True)
        assert self._proc.stdin is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._stdin.write(chunk)
        except BrokenPipeError:
            # The worker stopped (an error it will report in finish()); keep storing the blob.
            self._broken = True

    def finish(self) -> UnpackResult:
        try:
            # communicate() closes stdin (the worker's end of input) and tolerates a broken pipe.
            out, err = self._proc.communicate(timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise errors.DeadlineExceeded(f"unpacking took over {WORKER_TIMEOUT:.0f}s") from None
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            reply: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except ValueError:
            reply = {}
        if self._proc.returncode == 0 and "diff_id" in reply:
            return UnpackResult(diff_id=Digest(reply["diff_id"]), size=int(reply["size"]),
                                implicit_dirs=tuple(reply.get("implicit_dirs", ())))
        kind = reply.get("error", "")
        message = reply.get("message") or err.decode(errors="replace").strip()[-2000:] or (
            f"unpack worker exited with status {self._proc.returncode}")
        if kind == "LowerNeeded":
            raise LowerNeeded(message)
        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, HawserError):
            raise cls(message, hint=reply.get("hint") or None)
        raise Internal(f"unpack worker failed: {message}")

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._stdin.close()
        except OSError:
            pass
        self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


def layer_compression(desc: Descriptor) -> str:
    compression = media.layer_compression(desc.media_type)
    if compression is None:
        raise InvalidArgument(f"layer {desc.digest} has media type {desc.media_type!r}, which is not a layer",
                              hint="hawser unpacks OCI and Docker tar, tar+gzip and tar+zstd layers")
    return compression


class LayerPipeline:
    """Fetches and unpacks one image's layers; see the module docstring."""

    def __init__(self, *, content: ContentStore, metadata: Metadata, snapshotter: Snapshotter,
                 source: BlobSource, lease: str, locks_dir: str, namespace: str,
                 max_concurrent: int, progress: ProgressSink, meter: PullMeter | None = None) -> None:
        self._content = content
        self._metadata = metadata
        self._snapshotter = snapshotter
        self._source = source
        self._lease = lease
        self._locks_dir = locks_dir
        self._namespace = namespace
        self._max_concurrent = max_concurrent
        self._progress = progress
        self.meter = meter if meter is not None else PullMeter()
        self._abort = threading.Event()
        self._active: set[str] = set()
        self._active_lock = threading.Lock()

    # --- the whole image ---------------------------------------------------

    def run(self, manifest: Manifest, config: ImageConfig) -> Digest | None:
        """Make sure every layer is stored and unpacked; return the top chain ID."""
        if len(manifest.layers) != len(config.diff_ids):
            raise InvalidArgument(
                f"image has {len(manifest.layers)} layers but its config lists {len(config.diff_ids)} diff_ids")
        if not manifest.layers:
            return None
        for desc in manifest.layers:
            layer_compression(desc)
        chains = chain_ids(config.diff_ids)
        rebase = self._snapshotter.supports_rebase
        os.makedirs(self._locks_dir, exist_ok=True)
        futures: list[Future[_Applied | None]] = []
        pool = ThreadPoolExecutor(max_workers=self._max_concurrent, thread_name_prefix="layer")
        try:
            for i, desc in enumerate(manifest.layers):
                if self._committed(chains[i]):
                    futures.append(pool.submit(self._ensure_blob, desc))
                elif rebase:
                    futures.append(pool.submit(self._fetch_and_unpack, desc, chains[i]))
                else:
                    futures.append(pool.submit(self._ensure_blob, desc))
            for i, desc in enumerate(manifest.layers):
                parent = chains[i - 1] if i else ""
                outcome = futures[i].result()
                if isinstance(outcome, _Applied):
                    self._commit(outcome, desc, config.diff_ids[i], chains[i], parent)
                elif not self._committed(chains[i]):
                    self._unpack_on_parent(desc, config.diff_ids[i], chains[i], parent)
                else:
                    self._progress(LayerProgress(str(desc.digest), "exists", desc.size, desc.size))
        except BaseException:
            self._abort.set()
            raise
        finally:
            pool.shutdown(wait=True)
            for fut in futures:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    leftover = fut.result()
                    if isinstance(leftover, _Applied):
                        leftover.lock.release()
            for key in list(self._active):
                self._remove_quietly(key)
        return chains[-1]

    # --- one layer ----------------------------------------------------------

    def _committed(self, key: str) -> bool:
        try:
            return self._snapshotter.stat(key).kind is Kind.COMMITTED
        except NotFound:
            return False

    def _lock(self, chain: Digest) -> FileLock:
        lock = FileLock(os.path.join(self._locks_dir, f"unpack-{chain.encoded}.lock"))
        lock.acquire()
        return lock

    def _new_key(self, chain: Digest) -> str:
        key = f"extract-{os.getpid()}-{os.urandom(6).hex()}-{chain.encoded[:16]}"
        self._metadata.leases.add_resource(self._lease, f"snapshot/{self._snapshotter.name}", key)
        with self._active_lock:
            self._active.add(key)
        return key

    def _remove_quietly(self, key: str) -> None:
        try:
            self._snapshotter.remove(key)
        except HawserError:
            pass  # GC collects it once the lease is gone
        with self._active_lock:
            self._active.discard(key)

    def _fetch_and_unpack(self, desc: Descriptor, chain: Digest) -> _Applied | None:
        """Parallel path: unpack into a parentless snapshot while downloading."""
        lock = self._lock(chain)
        try:
            if self._committed(chain):
                lock.release()
                self._ensure_blob(desc)
                return None
            key = self._new_key(chain)
            self._snapshotter.prepare(key, "")
            worker = UnpackProcess(self._snapshotter.apply_target(key), layer_compression(desc),
                                   allow_lower_needed=True)
            try:
                with self.meter.stage(UNPACK):
                    self._fetch(desc, worker.feed)
                    self._progress(LayerProgress(str(desc.digest), "unpacking", desc.size, desc.size))
                    try:
                        result: UnpackResult | None = worker.finish()
                    except LowerNeeded:
                        result = None
            except BaseException:
                worker.kill()
                raise
            return _Applied(key=key, result=result, lock=lock)
        except BaseException:
            lock.release()
            raise

    def _commit(self, applied: _Applied, desc: Descriptor, diff_id: Digest, chain: Digest, parent: str) -> None:
        try:
            if applied.result is None:
                # Hardlinks into lower layers: redo this layer on top of its parents.
                self._remove_quietly(applied.key)
                self._apply_from_store(desc, diff_id, chain, parent)
                return
            with self.meter.stage(COMMIT):
                self._commit_applied(applied, desc, diff_id, chain, parent)
        finally:
            applied.lock.release()

    def _commit_applied(self, applied: _Applied, desc: Descriptor, diff_id: Digest, chain: Digest,
                        parent: str) -> None:
        assert applied.result is not None
        self._check_diff_id(desc, diff_id, applied.result.diff_id)
        if parent:
            # Refuses a layer writing through a symlink an earlier layer planted, and gives
            # directories the layer only implies the owner and mode they have below.
            check_implicit_dirs(applied.result.implicit_dirs, self._snapshotter.lower_dirs(parent),
                                upper=self._snapshotter.apply_target(applied.key).path)
        self._metadata.leases.add_resource(self._lease, f"snapshot/{self._snapshotter.name}", str(chain))
        failpoint("unpack.before-commit")
        try:
            self._snapshotter.commit(str(chain), applied.key, parent=parent)
        except AlreadyExists:
            self._remove_quietly(applied.key)
        with self._active_lock:
            self._active.discard(applied.key)
        self._progress(LayerProgress(str(desc.digest), "done", desc.size, desc.size))
        failpoint("unpack.after-layer")

    def _unpack_on_parent(self, desc: Descriptor, diff_id: Digest, chain: Digest, parent: str) -> None:
        lock = self._lock(chain)
        try:
            if self._committed(chain):
                self._progress(LayerProgress(str(desc.digest), "exists", desc.size, desc.size))
                return
            self._apply_from_store(desc, diff_id, chain, parent)
        finally:
            lock.release()

    def _apply_from_store(self, desc: Descriptor, diff_id: Digest, chain: Digest, parent: str) -> None:
        """Sequential path: apply the stored blob onto a snapshot of its parent."""
        key = self._new_key(chain)
        self._snapshotter.prepare(key, parent)
        self._progress(LayerProgress(str(desc.digest), "unpacking", desc.size, desc.size))
        worker = UnpackProcess(self._snapshotter.apply_target(key), layer_compression(desc),
                               allow_lower_needed=False)
        try:
            with self.meter.stage(UNPACK), self._content.open(desc.digest) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    worker.feed(chunk)
                result = worker.finish()
        except BaseException:
            worker.kill()
            self._remove_quietly(key)
            raise
        try:
            self._check_diff_id(desc, diff_id, result.diff_id)
        except DataLoss:
            self._remove_quietly(key)
            raise
        with self.meter.stage(COMMIT):
            self._metadata.leases.add_resource(self._lease, f"snapshot/{self._snapshotter.name}", str(chain))
            failpoint("unpack.before-commit")
            self._snapshotter.commit(str(chain), key)
        with self._active_lock:
            self._active.discard(key)
        self._progress(LayerProgress(str(desc.digest), "done", desc.size, desc.size))
        failpoint("unpack.after-layer")

    @staticmethod
    def _check_diff_id(desc: Descriptor, expected: Digest, actual: Digest) -> None:
        if expected != actual:
            raise DataLoss(f"layer {desc.digest}: uncompressed digest {actual} does not match the config's "
                           f"diff_id {expected}", hint="the image is corrupt or was tampered with")

    # --- content ------------------------------------------------------------

    def _ensure_blob(self, desc: Descriptor) -> None:
        self._fetch(desc, None)
        self._progress(LayerProgress(str(desc.digest), "done", desc.size, desc.size))
        return None

    def _fetch(self, desc: Descriptor, sink: Callable[[bytes], None] | None) -> None:
        """Store the blob (resuming a partial ingest) and pass every byte, from
        the first, to ``sink``. Idempotent: a stored blob is only read back."""
        self._metadata.leases.add_resource(self._lease, "content", str(desc.digest))
        digest = str(desc.digest)
        ref = f"layer-{desc.digest.encoded}"
        self._metadata.leases.add_resource(self._lease, "ingest", ref)
        try:
            writer = self._content.writer(ref, expected=desc.digest, total=desc.size)
        except AlreadyExists:
            self.meter.present()
            self._record(desc)
            self._progress(LayerProgress(digest, "exists", desc.size, desc.size))
            if sink is not None:
                with self._content.open(desc.digest) as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        self._check_abort()
                        sink(chunk)
            return
        with self.meter.stage(FETCH), writer:
            done = resumed = writer.offset
            if done and sink is not None:
                # Resuming an interrupted download: the worker needs the stream from byte 0.
                with open(writer.data_path, "rb") as partial:
                    remaining = done
                    while remaining:
                        chunk = partial.read(min(1 << 20, remaining))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                        sink(chunk)
            self._progress(LayerProgress(digest, "fetching", done, desc.size))
            with self._source.open_blob(desc, offset=done) as stream:
                for chunk in stream:
                    self._check_abort()
                    writer.write(chunk)
                    if sink is not None:
                        sink(chunk)
                    done += len(chunk)
                    self._progress(LayerProgress(digest, "fetching", done, desc.size))
            writer.commit(size=desc.size, expected=desc.digest)
        self.meter.fetched(done - resumed)
        self._record(desc)

    def _record(self, desc: Descriptor, labels: dict[str, str] | None = None) -> None:
        self._metadata.blobs.record(str(desc.digest), desc.size, labels or {}, namespace=self._namespace)

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise _Aborted()


def store_small_blob(content: ContentStore, metadata: Metadata, lease: str, desc: Descriptor, data: bytes,
                     labels: dict[str, str], namespace: str) -> None:
    """Store a manifest, index or config (already verified) and record it with its GC labels."""
    metadata.leases.add_resource(lease, "content", str(desc.digest))
    try:
        writer = content.writer(f"small-{desc.digest.encoded}", expected=desc.digest, total=len(data))
    except AlreadyExists:
        pass
    else:
        with writer:
            if writer.offset:
                writer.truncate()
            writer.write(data)
            writer.commit(size=len(data), expected=desc.digest)
    metadata.blobs.record(str(desc.digest), len(data), labels, namespace=namespace)


__all__ = ["LayerPipeline", "LowerNeeded", "Sequence", "UnpackProcess", "UnpackResult", "layer_compression",
           "store_small_blob"]
