"""Feature extraction speed: `backbones.extract_features` (on a CPU, batches run channels-last) against the same
hooks on a plain-layout batch, per backbone, on this machine.

    .venv/bin/python bench/features.py --out bench/results/features [--backbones mobilenet_v2,efficientnet_lite0,efficientnet_lite2]
        [--size 256] [--bs 32] [--rounds 5]

Random 0..1 images of --size x --size in batches of --bs, PatchCore's stride-8 and stride-16 maps; one warm-up batch,
then the median seconds per batch over --rounds batches for each layout, images/s, the speed-up, and the largest
difference between the two layouts' maps relative to the maps' largest value (float rounding only). Run it on a quiet
machine: timings of other jobs' CPU share are noise.
"""
import statistics, time
import torch
from anomaly_fastai.backbones import FeatureExtractor, extract_features, get_backbone
from anomaly_fastai.metrics import ResultsTable
from common import bench_parser, device_name

def seconds(f, rounds: int) -> tuple[float, dict]:
    "Median seconds of `f()` over `rounds` calls after one warm-up call, and its last result."
    out, times = f(), []
    for _ in range(rounds):
        t = time.perf_counter(); out = f(); times.append(time.perf_counter() - t)
    return statistics.median(times), out

def main():
    ap = bench_parser(__doc__, 'bench/results/features')
    ap.set_defaults(backbones='mobilenet_v2,efficientnet_lite0,efficientnet_lite2')
    ap.add_argument('--size', type=int, default=256, help='side of the square random inputs (default 256)')
    ap.add_argument('--bs', type=int, default=32, help='images per batch (default 32, what the detectors score with)')
    ap.add_argument('--rounds', type=int, default=5, help='timed batches per layout (default 5)')
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    x, table = torch.rand(a.bs, 3, a.size, a.size), ResultsTable()
    for name in a.backbones.split(','):
        bb = get_backbone(name)
        names = [bb.layers[k] for k in ('stride8', 'stride16')]
        def plain():
            with torch.inference_mode(), FeatureExtractor(bb.model.eval(), names) as fe: return fe(x)
        t_plain, ref = seconds(plain, a.rounds)
        t_lib, got = seconds(lambda: extract_features(bb, x), a.rounds)
        diff = max(float((got[k] - ref[n]).abs().max() / ref[n].abs().max()) for k, n in zip(('stride8', 'stride16'), names))
        table.add(category=name, input=f'{a.size}x{a.size}', bs=a.bs, plain_s_per_batch=t_plain, library_s_per_batch=t_lib,
                  plain_images_per_s=a.bs / t_plain, library_images_per_s=a.bs / t_lib, speedup=t_plain / t_lib,
                  max_rel_diff=diff, device=device_name())
        print(table, flush=True)
    table.to_csv(f'{a.out}.csv'); table.to_markdown(f'{a.out}.md')

if __name__ == '__main__': main()
