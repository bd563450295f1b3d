"Fusion as a CLI user meets it: fit, test, predict and export like any method; its options and errors on one line."
import csv
import pytest
from anomaly_fastai.data import sample_path
from test_cli import run

@pytest.mark.slow  # five processes, two fits: about a minute of CPU
def test_fusion_fit_test_predict_export(tmp_path):
    "--method fusion --members knn,padim at 64 px: one model folder, one threshold; the exported file predicts like the folder."
    m = tmp_path/'m'
    run('fit', '--method', 'fusion', '--members', 'knn,padim', '--combine', 'max', '--size', '64', '--out', m, '--quiet')
    r = run('test', '--model', m, '--out', tmp_path/'t', '--heatmaps', '2', '--quiet')
    row = next(csv.DictReader(open(tmp_path/'t'/'results.csv')))
    assert row['method'] == 'knn+padim (max)' and float(row['image_auroc']) > 0.8, r.stdout
    run('export', '--model', m, '--out', tmp_path/'m.onnx')
    images = sample_path()/'bottle'/'test'/'broken_small'
    for model, out in ((m, 'p'), (tmp_path/'m.onnx', 'q')): run('predict', '--model', model, '--out', tmp_path/out, '--no-heatmaps', images)
    p, q = (list(csv.DictReader(open(tmp_path/o/'predictions.csv'))) for o in ('p', 'q'))
    assert [a['label'] for a in p] == [b['label'] for b in q] and len(p) == 5
    assert max(abs(float(a['score']) - float(b['score'])) for a, b in zip(p, q)) < 1e-4

def test_fusion_option_errors(tmp_path):
    "A member list or an option the fusion refuses is a one-line error naming the option."
    for args, expect in ((('--members', 'knn'), 'argument --members: members: expected at least 2 methods'),
                         (('--members', 'knn,fusion'), "'fusion' cannot be a member"),
                         (('--combine', 'median'), 'argument --combine: combine must be one of mean, max'),
                         (('--coreset', '0.5'), '--coreset does not apply to --method fusion')):
        r = run('fit', '--method', 'fusion', *args, '--out', tmp_path/'x', ok=False)
        assert r.returncode == 2 and expect in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert '--members' in run('fit', '--method', 'fusion', '--help').stdout
