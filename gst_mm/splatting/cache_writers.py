"""The cache's writers on disk: temp files of atomic writes and per-entry claims.

* A writer writes ``<entry>.h5.tmp-<host>-<pid>-<hex>`` and renames it over the entry
  (:meth:`.cache.GaussianCache.save`); a writer killed inside that window leaves the
  temp file, which :func:`remove_stale_temps` deletes once its writer is gone.
* A fitting writer claims an entry first (:func:`claim_entry`: ``<entry>.h5.claim``,
  created with ``O_EXCL``, holding ``<host> <pid>``) so two precompute runs never fit
  the same entry twice; a dead writer's claim is taken over and swept likewise.

"Gone": this host's pid no longer runs, or (another host's file) older than
:data:`STALE_TMP_SECONDS`.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import socket
import time
from typing import Iterable, List, Optional, Tuple

#: temp files of writers: ``<entry>.h5.tmp-<host>-<pid>-<hex>``
_TMP_RE = re.compile(r'\.h5\.tmp-(?:(?P<host>[^/]+)-)?(?P<pid>\d+)-[0-9a-f]{8}$')
#: temp files of other hosts (or unparsable) older than this are removed too
STALE_TMP_SECONDS = 24 * 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


#: claims of writers at work: ``<entry>.h5.claim`` holding ``<host> <pid>``
CLAIM_SUFFIX = '.claim'


def _claim_holder(path: str) -> Optional[str]:
    """``'<host> pid <pid>'`` of a live claim at ``path``; ``None`` when there is none or
    its writer is gone (this host's pid not running, or another host's claim older
    than :data:`STALE_TMP_SECONDS`): such a claim is removed."""
    try:
        with open(path) as f:
            host, pid = f.read().split()[:2]
        age = time.time() - osp.getmtime(path)
    except (OSError, ValueError):
        return None
    mine = host == socket.gethostname()
    if (mine and not _pid_alive(int(pid))) or (not mine and age > STALE_TMP_SECONDS):
        try:
            os.remove(path)
        except OSError:
            pass
        return None
    return f'{host} pid {pid}'


def claim_entry(path: str) -> Tuple[bool, Optional[str]]:
    """Claim the entry file ``path`` for writing: ``(True, None)`` when this process
    now holds ``<path>.claim`` (created with ``O_EXCL``), ``(False, holder)`` when a live
    writer holds it (a dead writer's claim is taken over)."""
    claim = path + CLAIM_SUFFIX
    os.makedirs(osp.dirname(claim) or '.', exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _claim_holder(claim)
            if holder is not None:
                return False, holder
            continue  # stale: removed, try once more
        with os.fdopen(fd, 'w') as f:
            f.write(f'{socket.gethostname()} {os.getpid()}\n')
        return True, None
    return False, 'another writer'


def release_entry(path: str) -> None:
    """Remove this process's claim of ``path`` (:func:`claim_entry`)."""
    try:
        os.remove(path + CLAIM_SUFFIX)
    except FileNotFoundError:
        pass


def remove_stale_temps(folders: Iterable[str]) -> List[str]:
    """Delete the temp files and entry claims killed writers left in ``folders``;
    returns their paths.

    A temp file is stale when its writer (host and pid in its name) is this host's
    and no longer runs, or (another host's) when it is older than
    :data:`STALE_TMP_SECONDS`; a claim likewise by the host and pid it holds. Those of
    live writers are kept."""
    host, now, removed = socket.gethostname(), time.time(), []
    for folder in sorted(set(folders)):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith('.h5' + CLAIM_SUFFIX):  # a dead writer's claim
                if _claim_holder(osp.join(folder, name)) is None and not osp.exists(
                        osp.join(folder, name)):
                    removed.append(osp.join(folder, name))
                continue
            m = _TMP_RE.search(name)
            if m is None:
                continue
            path = osp.join(folder, name)
            mine = m.group('host') in (None, host)
            try:
                old = now - osp.getmtime(path) > STALE_TMP_SECONDS
                if (mine and not _pid_alive(int(m.group('pid')))) or old:
                    os.remove(path)
                    removed.append(path)
            except OSError:
                continue  # removed meanwhile by another sweeper
    return removed
