"""tools/train.py with an init_cfg whose pretrained weights cannot be loaded: one line,
exit code 2, no long network wait (gst_mm.utils.pretrained)."""
import socket
import time

import pytest
import torch

pytest.importorskip('mmpose')

from tiny_configs import tiny_counting_cfg  # noqa: E402

from gst_mm.utils.pretrained import (  # noqa: E402
    PretrainedWeightsError,
    check_checkpoint,
    check_pretrained_weights,
    find_pretrained,
)

BAD_URL = 'https://invalid.example/weights.pth'  # .example never resolves (RFC 2606)
KEY = 'model.backbone.init_cfg'


@pytest.fixture
def tiny_cfg_file(tiny_crowd, tmp_path):
    """Write the tiny L2 config with a given backbone init_cfg checkpoint; return its path."""
    data_root, cache_dir = tiny_crowd

    def make(checkpoint):
        cfg = tiny_counting_cfg('l2_vgg19_synthetic.py', data_root, cache_dir,
                                tmp_path / 'work', iters=1)
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
        path = str(tmp_path / 'tiny_l2_pretrained.py')
        cfg.dump(path)
        return path

    return make


def _run_train(load_tool, capsys, argv):
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        load_tool('train').main(argv)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err, elapsed


def test_unreachable_url_is_one_line_and_exit_code_2(tiny_cfg_file, load_tool, capsys, tmp_path):
    cfg_file = tiny_cfg_file(BAD_URL)
    code, err, elapsed = _run_train(load_tool, capsys, [cfg_file, '--work-dir',
                                                        str(tmp_path / 'w')])
    assert code == 2
    assert len(err) == 1 and err[0].startswith('train.py: error: pretrained weights')
    line = err[0]
    assert f'{KEY}.checkpoint={BAD_URL}' in line and 'invalid.example does not resolve' in line
    assert f'--cfg-options {KEY}.checkpoint=checkpoints/weights.pth' in line
    assert f'--cfg-options {KEY}=None' in line  # the random-init way out
    assert elapsed < 20  # no network timeout was waited for
    assert not (tmp_path / 'w').exists()  # it stopped before the runner was built


def test_missing_local_file_is_one_line_and_exit_code_2(tiny_cfg_file, load_tool, capsys,
                                                        tmp_path):
    missing = str(tmp_path / 'checkpoints' / 'vgg19-dcbb9e9d.pth')
    code, err, _ = _run_train(load_tool, capsys, [tiny_cfg_file(missing)])
    assert code == 2 and len(err) == 1
    assert f'{KEY}.checkpoint={missing}: no such file' in err[0]
    assert 'download the weights to that path' in err[0] and f'{KEY}=None' in err[0]


def test_suggested_remedies_work(tiny_cfg_file, load_tool, tmp_path):
    """``--cfg-options model.backbone.init_cfg=None`` trains from a random init; a file
    at the named path passes the check."""
    cfg_file = tiny_cfg_file(BAD_URL)
    load_tool('train').main([cfg_file, '--work-dir', str(tmp_path / 'random'),
                             '--cfg-options', f'{KEY}=None'])
    assert (tmp_path / 'random' / 'iter_1.pth').is_file()  # it trained
    # a local checkpoint with torchvision-style keys
    from gst_mm.models import VGG19Regressor

    weights = {k: v for k, v in VGG19Regressor(widths=(4, 8, 8, 16, 16)).state_dict().items()
               if k.startswith('features.')}
    path = tmp_path / 'checkpoints' / 'vgg.pth'
    path.parent.mkdir()
    torch.save(weights, path)
    check_checkpoint(KEY, str(path))  # no error
    with pytest.raises(PretrainedWeightsError, match='no such file'):
        check_checkpoint(KEY, str(path) + '.missing')


def test_check_is_bounded_in_time_and_uses_the_hub_cache(monkeypatch, tmp_path):
    # a resolver that hangs: the check gives up after its timeout
    monkeypatch.setattr(socket, 'getaddrinfo', lambda *a, **k: time.sleep(30))
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError, match='took longer than 0.5 s'):
        check_checkpoint(KEY, 'https://download.example.org/vgg.pth', timeout=0.5)
    assert time.monotonic() - start < 5
    # a file already in torch's hub cache needs no network at all
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'vgg.pth').write_bytes(b'')
    check_checkpoint(KEY, 'https://download.example.org/vgg.pth', timeout=0.5)


def test_refused_connection_and_model_table_names(monkeypatch):
    with pytest.raises(PretrainedWeightsError, match='127.0.0.1 cannot be reached'):
        check_checkpoint(KEY, 'http://127.0.0.1:9/vgg.pth', timeout=2)  # port 9: discard
    # torchvision:// names go through MMEngine's table to their URL, then the same check
    monkeypatch.setattr(socket, 'getaddrinfo', _no_dns)
    with pytest.raises(PretrainedWeightsError,
                       match=r'torchvision://vgg19.*download.pytorch.org does not resolve'):
        check_checkpoint(KEY, 'torchvision://vgg19', timeout=2)


def _no_dns(*args, **kwargs):
    raise socket.gaierror(-2, 'Name or service not known')


def test_find_pretrained_keys():
    model = dict(type='DensityCounter',
                 backbone=dict(type='VGG19Regressor',
                               init_cfg=[dict(type='Kaiming'),
                                         dict(type='Pretrained', checkpoint='a.pth')]),
                 init_cfg=dict(type='mmengine.Pretrained', checkpoint='b.pth'))
    assert sorted(find_pretrained(model)) == [('model.backbone.init_cfg.1', 'a.pth'),
                                              ('model.init_cfg', 'b.pth')]
    check_pretrained_weights(dict(model=dict(backbone=dict(init_cfg=None))))  # nothing to do
