"""Runs INSIDE anomalib's own virtualenv (never imports anomaly_fastai): fit and score anomalib 2.7.0 PatchCore or
PaDiM on input batches prepared by bench/anomalib_peer.py, and save raw scores and maps at the input resolution.

Only anomalib's torch models are used (`PatchcoreModel`, `PadimModel`: the code its Lightning modules call), without
its Trainer, pre-processor, post-processor or data modules, so the peer sees exactly our input tensors and pays no
framework overhead. Prints one line `ROW {json}` with fit and test seconds, peak RSS and bank size.
"""
import json, resource, sys, time
from pathlib import Path
import torch

def batches(folder: Path, mean, std):
    "The saved (B,3,H,W) float16 0..1 batches of `folder`, in order, normalised by the backbone's statistics."
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for f in sorted(folder.glob('*.pt')): yield (torch.load(f).float() - m) / s

def load_weights(extractor, path):
    "Load the offline EfficientNet-Lite weights (timm names) into anomalib's `features_only` timm model; every key must land."
    sd = torch.load(path, map_location='cpu', weights_only=True)
    own = extractor.feature_extractor.state_dict()
    missing = [k for k in own if k not in sd]
    if missing: sys.exit(f'weights {path} lack {len(missing)} keys of the anomalib extractor, e.g. {missing[:3]}')
    extractor.feature_extractor.load_state_dict({k: sd[k] for k in own}, strict=True)

def main():
    a = json.loads(sys.argv[1])
    torch.manual_seed(a['seed']); torch.set_grad_enabled(False)
    work = Path(a['work'])
    if a['method'] == 'patchcore':
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel
        model = PatchcoreModel(layers=a['layers'], backbone=a['timm_name'], pre_trained=False, num_neighbors=9)
    else:
        from anomalib.models.image.padim.torch_model import PadimModel
        model = PadimModel(backbone=a['timm_name'], layers=a['layers'], pre_trained=False, n_features=a['n_features'])
    load_weights(model.feature_extractor, a['weights'])
    t0 = time.perf_counter()
    model.train()   # training mode: forward stores the embeddings (as the Lightning training_step does)
    for x in batches(work/'train', a['mean'], a['std']): model(x)
    if a['method'] == 'patchcore' and a.get('random_bank'):
        # speed reference: a bank of the size coreset `random_bank` would keep, drawn at random (anomalib's greedy
        # selection at 0.1 takes ~17 min on bottle here); test cost depends only on the bank's size
        emb = torch.vstack(model.embedding_store); model.embedding_store.clear()
        model.memory_bank = emb[torch.randperm(len(emb))[:round(a['random_bank'] * len(emb))]]
    elif a['method'] == 'patchcore': model.subsample_embedding(a['coreset'])
    else: model.fit()
    fit_s = time.perf_counter() - t0
    model.eval()
    scores, maps, t0 = [], [], time.perf_counter()
    for x in batches(work/'test', a['mean'], a['std']):
        out = model(x)
        scores.append(out.pred_score.reshape(-1)); maps.append(out.anomaly_map[:, 0].half())
    test_s = time.perf_counter() - t0
    torch.save(dict(scores=torch.cat(scores), maps=torch.cat(maps)), work/'out.pt')
    bank = model.memory_bank if a['method'] == 'patchcore' else torch.cat([model.gaussian.mean.flatten(), model.gaussian.inv_covariance.flatten()])
    print('ROW ' + json.dumps(dict(fit_s=fit_s, test_s=test_s, n_test=len(torch.cat(scores)),
                                   peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                   state_mb=bank.nbytes / 2**20)), flush=True)

if __name__ == '__main__': main()
