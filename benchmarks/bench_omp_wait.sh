#!/usr/bin/env bash
# Two torch processes side by side with two threads each on a 2-core machine (what scripts/test.sh's two xdist
# workers are), timed with OpenMP's default wait policy (A) and with OMP_WAIT_POLICY=PASSIVE (B), interleaved:
# farm-bench prints the A/B ratios of CPU and wall time. The work is a few 1-D convolutions, the shape of a
# speech model's front end.
#   bash benchmarks/bench_omp_wait.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$PWD/.venv/bin/python}
pair=$(mktemp)
trap 'rm -f "$pair"' EXIT
cat > "$pair" <<SH
#!/usr/bin/env bash
work='import torch
torch.manual_seed(0)
x = torch.randn(8, 256, 400)
net = torch.nn.Sequential(*[torch.nn.Conv1d(256, 256, 3, padding=1) for _ in range(4)])
with torch.no_grad():
    for _ in range(60):
        net(x[:, :, :200]); net(x[:1])'
"$python" -c "\$work" & "$python" -c "\$work"; wait
SH
chmod +x "$pair"
farm-bench -n "${1:-4}" --timeout 600 --vs "env OMP_WAIT_POLICY=PASSIVE $pair" -- "$pair"
