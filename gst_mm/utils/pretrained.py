"""Check, before a run starts, that the pretrained weights a config's ``init_cfg`` names
can be loaded, and say in one line what to do when they cannot.

MMEngine loads ``init_cfg=dict(type='Pretrained', checkpoint=...)`` inside
``Runner.train()``, after the ``before_run`` hooks (for GST configs: the Gaussian
fit of every training image). A missing file then ends the run with a long
traceback, and a URL on a machine without network with a ``URLError`` traceback, or
a wait of the resolver's or the server's timeout. :func:`check_pretrained_weights`
runs first and bounds every network step by ``timeout`` seconds:

* local path: the file must exist;
* ``http://`` / ``https://``: served from torch's hub cache
  (``<torch.hub.get_dir()>/checkpoints/<file name>``, where MMEngine's download puts
  it) if present; otherwise the host must resolve (in a helper thread, so a stalled
  resolver cannot block) and answer a ``HEAD`` request (404 / 410 are errors, other
  HTTP statuses are left to the download);
* ``torchvision://``, ``modelzoo://``, ``open-mmlab://``, ``mmcls://``: mapped to their
  URL (or path) through MMEngine's model tables, then checked as above;
* other schemes (``s3://``, ``pavi://``, ...): not checked.

A check that passes does not guarantee the download: a server can still stall
mid-transfer.
"""
from __future__ import annotations

import os
import os.path as osp
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, List, Optional, Tuple

#: Seconds allowed for each network step of the check (name resolution, HEAD request).
DEFAULT_TIMEOUT = 5.0


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights named by an ``init_cfg`` cannot be loaded (one-line message)."""


def find_pretrained(model_cfg: Any, prefix: str = 'model') -> List[Tuple[str, str]]:
    """``(key, checkpoint)`` of every ``type='Pretrained'`` init config in ``model_cfg``.

    ``key`` is the dotted config key of the ``init_cfg`` (``model.backbone.init_cfg``;
    list entries as ``model.backbone.init_cfg.0``), ready for ``--cfg-options``.
    """
    found: List[Tuple[str, str]] = []

    def visit(value: Any, key: str) -> None:
        if isinstance(value, dict):
            if str(value.get('type', '')).split('.')[-1] == 'Pretrained' \
                    and value.get('checkpoint') is not None:
                found.append((key, str(value['checkpoint'])))
                return
            for k, v in value.items():
                visit(v, f'{key}.{k}')
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(v, f'{key}.{i}')

    visit(model_cfg, prefix)
    return found


def _resolve(host: str, port: int, timeout: float) -> Optional[str]:
    """``None`` if ``host`` resolves within ``timeout`` s, else the reason."""
    outcome: dict = {}

    def run() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome['ok'] = True
        except OSError as err:
            outcome['error'] = err

    thread = threading.Thread(target=run, name='gst_mm-resolve', daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f'resolving {host} took longer than {timeout:g} s'
    if 'error' in outcome:
        return f'host {host} does not resolve ({outcome["error"]})'
    return None


def _url_problem(url: str, timeout: float) -> Optional[str]:
    """``None`` when ``url`` looks downloadable (or is cached), else the reason."""
    import torch

    parsed = urllib.parse.urlparse(url)
    cached = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(parsed.path))
    if osp.basename(parsed.path) and osp.isfile(cached):
        return None
    if not parsed.hostname:
        return 'the URL has no host'
    port = parsed.port or (443 if parsed.scheme == 'https' else 80)
    problem = _resolve(parsed.hostname, port, timeout)
    if problem is not None:
        return problem
    try:
        request = urllib.request.Request(url, method='HEAD')
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            return f'the server answers HTTP {err.code} ({err.reason})'
        return None  # e.g. 403/405 to HEAD: let the download decide
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        return f'{parsed.hostname} cannot be reached within {timeout:g} s ({reason})'


def _model_table_target(checkpoint: str) -> Optional[str]:
    """URL or path behind MMEngine's ``torchvision://`` / ``open-mmlab://`` / ``mmcls://``
    names, ``None`` for an unknown name (left to MMEngine's own error)."""
    from mmengine.runner import checkpoint as ckpt

    for prefixes, table in ((('torchvision://', 'modelzoo://'), ckpt.get_torchvision_models),
                            (('open-mmlab://', 'openmmlab://'), ckpt.get_external_models),
                            (('mmcls://', ), ckpt.get_mmcls_models)):
        for prefix in prefixes:
            if checkpoint.startswith(prefix):
                return table().get(checkpoint[len(prefix):])
    return None


def check_checkpoint(key: str, checkpoint: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Check one ``Pretrained`` init config (``key`` its config key).

    Raises:
        PretrainedWeightsError: one line naming the key, the file or URL, the reason
            and what to do.
    """
    target = checkpoint
    if '://' in checkpoint and not checkpoint.startswith(('http://', 'https://')):
        target = _model_table_target(checkpoint)
        if target is None:
            return  # s3://, pavi://, unknown model names: MMEngine reports those
    local = f'checkpoints/{osp.basename(urllib.parse.urlparse(target).path) or "weights.pth"}'
    remedy_url = (f'download it once (e.g. to {local}) and set --cfg-options '
                  f'{key}.checkpoint={local}, or set --cfg-options {key}=None to start from '
                  'a random init')
    if target.startswith(('http://', 'https://')):
        problem = _url_problem(target, timeout)
        if problem is not None:
            raise PretrainedWeightsError(
                f'pretrained weights {key}.checkpoint={checkpoint} cannot be downloaded: '
                f'{problem}; {remedy_url}')
        return
    path = osp.expanduser(target)
    if not osp.isfile(path):
        raise PretrainedWeightsError(
            f'pretrained weights {key}.checkpoint={checkpoint}: no such file '
            f'({osp.abspath(path)}); download the weights to that path (or elsewhere and '
            f'set --cfg-options {key}.checkpoint=PATH), or set --cfg-options {key}=None to '
            'start from a random init')
    if not os.access(path, os.R_OK):
        raise PretrainedWeightsError(
            f'pretrained weights {key}.checkpoint={checkpoint}: the file is not readable')


def check_pretrained_weights(cfg: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Check every ``Pretrained`` init config of ``cfg.model`` (module docstring).

    Raises:
        PretrainedWeightsError: for the first one that cannot be loaded.
    """
    model = cfg.get('model', None) if hasattr(cfg, 'get') else None
    for key, checkpoint in find_pretrained(model):
        check_checkpoint(key, checkpoint, timeout)


__all__ = ['DEFAULT_TIMEOUT', 'PretrainedWeightsError', 'find_pretrained', 'check_checkpoint',
           'check_pretrained_weights']
