"""What regularization does to the model itself, per member at the end of training: "L1 makes weights sparse,
max-norm caps norms, weight decay shrinks them" as numbers.

Per weight layer (the tensors the penalties act on, MemberModel.weights, in order): the Frobenius norm, the
fraction of near-zero weights (|w| < SPARSE_BELOW: Adam with an L1 penalty hovers around zero rather than landing on
it, so an exact-zero count would read 0 for every member), and the largest singular value of the weight viewed as
[units, fan_in] (the layer's Lipschitz constant for a dense layer; for a convolution, of its unrolled kernel).
Over the training split: the distribution of the margin (the true class's logit minus the largest other logit,
negative where the member is wrong), as quantiles, and its median normalised by the product of the layers'
spectral norms (Bartlett et al. 2017's spectrally normalised margin, up to their complexity factor).
"""

from __future__ import annotations

import math

import torch

SPARSE_BELOW = 1e-3
QUANTILES = (0.1, 0.5, 0.9)


@torch.no_grad()
def measure(model, margins: torch.Tensor) -> list[dict]:
    """[K] dicts: {"layers": [{norm, near_zero, spectral}...], "margin": {q10, q50, q90, normalized}}, non-finite
    values (a diverged member's) as None. margins: the training split's, [K, N], as the final evaluation keeps them
    (train/evaluate.py: one pass over the data gives the metrics and these)."""
    k = margins.shape[0]
    layers = [[] for _ in range(k)]
    log_spectral = torch.zeros(k, dtype=torch.float64)
    for w in model.weights:
        rows = model.weight_rows(w).detach().float()  # [K, units, fan_in]
        norm = rows.flatten(1).norm(dim=1)
        near = (rows.flatten(1).abs() < SPARSE_BELOW).float().mean(1)
        # a diverged member's weights are NaN or inf, which the SVD refuses: zeros stand in, and its value is NaN
        ok = torch.isfinite(rows).flatten(1).all(1)
        spectral = torch.linalg.matrix_norm(torch.where(ok.view(-1, 1, 1), rows, 0.0), ord=2)
        spectral = torch.where(ok, spectral, float("nan"))
        log_spectral += spectral.double().clamp_min(1e-30).log().cpu()
        for j, (n, z, s) in enumerate(zip(norm.tolist(), near.tolist(), spectral.tolist())):
            layers[j].append({"norm": n, "near_zero": z, "spectral": s})
    qs = torch.quantile(margins, torch.tensor(QUANTILES, device=margins.device), dim=1).T.cpu().tolist()  # [K, 3]
    out = []
    for j in range(k):
        median = qs[j][1]
        scale = math.exp(log_spectral[j].item())
        out.append(
            {
                "layers": layers[j],
                "margin": {
                    **{f"q{round(q * 100)}": v for q, v in zip(QUANTILES, qs[j])},
                    "normalized": median / scale if scale > 0 and math.isfinite(scale) else None,
                },
            }
        )
    return finite(out)


def finite(values):
    """Non-finite numbers (a diverged member's) as None, which keeps result.json valid JSON."""
    if isinstance(values, dict):
        return {k: finite(v) for k, v in values.items()}
    if isinstance(values, list):
        return [finite(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values
