"""`ganqp fid`: the selected metrics of a checkpoint or a folder of images against a
reference (a data set, a folder, or a statistics file); fid.json and a short printout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganqp_cli import distributed as dist_
from ganqp_cli.data import is_image_shape
from ganqp_cli.errors import UserError
from ganqp_cli.metrics import classwise
from ganqp_cli.metrics import registry as R
from ganqp_cli.metrics.evaluate import extractor_of, score_generator, score_source, summarize
from ganqp_cli.metrics.extractor_base import Extractor
from ganqp_cli.metrics.features import Source, dataset_source, folder_source
from ganqp_cli.metrics.reference import check_ref_meta, reference_stats, stats_of
from ganqp_cli.metrics.stats import Stats
from ganqp_cli.metrics.validate import validate_fid_command


def _data_reference(cfg: Any, run: Any, gen: Source | None) -> tuple[Any, int]:
    """The data set node and resolution of the reference: data=NAME, else the run's own."""
    from omegaconf import OmegaConf
    if cfg.get("data") is not None:
        res = cfg.res
        if res is None and run is not None:
            res = int(run.config.res)
        if res is None and gen is not None and gen.item is not None:
            res = int(gen.item(0).shape[-1])
        if res is None:
            raise UserError("res is required with data=NAME and no samples: the resolution "
                            "of the reference images, e.g. res=128.")
        return cfg.data, int(res)
    if run is not None:
        return OmegaConf.create(run.config.data), int(run.config.res)
    raise UserError("no reference: pass ref=DIR (images), ref=FILE.npz (statistics) or "
                    "data=NAME (a ganqp data set, with data.root=PATH and res=N); with "
                    "ckpt=PATH the run's own data set is the default.")


def _reference(cfg: Any, run: Any, gen: Source | None, extractor: Extractor
               ) -> tuple[Stats, str]:
    from ganqp_cli.config import make
    fc = cfg.fid
    if cfg.ref is not None:
        path = Path(str(cfg.ref)).expanduser()
        if path.suffix == ".npz":
            stats = Stats.load(path)
            check_ref_meta(stats, extractor, f"ref={cfg.ref}")
            return stats, f"statistics {path} ({stats.n or '?'} images)"
        src = folder_source(str(path), "ref", labels=_labelled(fc))
        return stats_of(src, extractor, fc), src.describe
    node, res = _data_reference(cfg, run, gen)
    src = dataset_source(make(node, "data", res=res), fc.ref_n, labels=_labelled(fc))
    stats, path = reference_stats(src, extractor, fc, cache=bool(fc.cache))
    return stats, src.describe + (f" (statistics cached at {path})" if path else "")


def _labelled(fc: Any) -> bool:
    return classwise.needs_labels(R.selected(fc.metrics))


def fid_command(cfg: Any) -> dict[str, Any]:
    validate_fid_command(cfg)
    dist = dist_.init_process_group()
    result = _measure(cfg, dist)
    if dist.enabled:  # leave together: a rank exiting with the group alive may abort
        dist_.barrier()
        dist_.shutdown()
    return result


def _measure(cfg: Any, dist: dist_.Dist) -> dict[str, Any]:
    device = dist_.device_for(str(cfg.device), dist)
    fc, metrics = cfg.fid, R.selected(cfg.fid.metrics)
    run, gen = None, None
    if cfg.ckpt is not None:
        from ganqp_cli.sampling import load_trained
        run = load_trained(str(cfg.ckpt), ema=bool(cfg.ema), device=str(device))
        if not is_image_shape(run.shape):
            raise UserError(f"ckpt={cfg.ckpt} models points, not images: FID needs images.")
        what = f"{cfg.ckpt} (iter {run.iter})"
        if "modes" in [m.name for m in metrics]:
            from ganqp_cli.metrics.modes import check_fits
            check_fits(str(run.config.data.name), f"ckpt={cfg.ckpt}")
    elif cfg.samples is not None:
        gen = folder_source(str(cfg.samples), "samples", labels=_labelled(fc))
        what = gen.describe
    gen_classes = run.classes if run is not None else gen.info.get("classes") if gen else None
    if _labelled(fc):
        classwise.check_generated(gen_classes, cfg)
        if "acc" in [m.name for m in metrics]:
            classwise.check_acc_fits(gen_classes, f"ckpt={cfg.ckpt}" if run is not None
                                     else f"samples={cfg.samples}")
    extractor = extractor_of(fc, metrics, device)
    given = cfg.ref is not None or cfg.get("data") is not None or cfg.save_stats is not None
    if R.needs_reference(metrics) or given:
        ref, ref_desc = _reference(cfg, run, gen, extractor)
    else:
        ref, ref_desc = None, "none (no metric of fid.metrics needs one)"
    if cfg.save_stats is not None and dist.is_main:
        ref.save(Path(str(cfg.save_stats)).expanduser())
        print(f"saved reference statistics ({ref_desc}) to {cfg.save_stats}")
    if run is None and gen is None:
        return {"n_ref": ref.n}
    if _labelled(fc) and ref is not None:
        # a checkpoint's class names (a folder's dataset.json holds indices only)
        classwise.check_reference(run.classes if run is not None else None, ref, ref_desc,
                                  metrics)
    if run is not None:
        counts = None if run.classes is None else run.class_counts or [1] * len(run.classes)
        draws = score_generator(run.G, run.z_dim, int(cfg.n), ref, extractor, fc, metrics,
                                device, what, counts)
        what = f"{cfg.n} samples of {what}"
    else:
        draws = [score_source(gen, ref, extractor, fc, metrics, device)]
    if not dist.is_main:
        return {}
    result = _result(cfg, draws, metrics, ref, ref_desc, extractor, what, run)
    _report(cfg, result, metrics, extractor)
    return result


def _result(cfg: Any, draws: list[dict[str, Any]], metrics: list[R.Metric], ref: Stats | None,
            ref_desc: str, extractor: Extractor, what: str, run: Any) -> dict[str, Any]:
    fc = cfg.fid
    result = {**summarize(draws, metrics), "n_ref": ref.n if ref else None,
              **extractor.identity(),
              "method": str(fc.method), "metrics": [m.name for m in metrics],
              "samples": what, "ref": ref_desc}
    if int(fc.repeats) > 1:
        result.update(repeats=len(draws), seeds=[d["seed"] for d in draws],
                      draws=[{k: d[k] for k in ("seed", *R.logged_keys(metrics))}
                             for d in draws])
    if hasattr(extractor, "accuracy"):
        result["extractor_heldout_accuracy"] = extractor.accuracy
    if run is not None:
        result["ckpt_iter"] = run.iter
    return result


def _report(cfg: Any, result: dict[str, Any], metrics: list[R.Metric],
            extractor: Extractor) -> None:
    from hydra.core.hydra_config import HydraConfig
    out = Path(str(cfg.out)) if cfg.out else Path(HydraConfig.get().runtime.output_dir) / "fid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    repeats = int(cfg.fid.repeats)
    # FID and KID on the first line, as before fid.metrics existed; the others below it.
    first = [R.describe(m, result) for m in metrics if m.name in ("fid", "kid")]
    lines = ["  ".join(first)] if first else []
    lines += [("  " if first else "") + R.describe(m, result)
              for m in metrics if m.name not in ("fid", "kid")]
    if repeats > 1:
        spread = ", ".join(f"{k} ± {result[k + '_repeat_std']:.3g}"
                           for k in R.logged_keys(metrics)
                           if result.get(k + "_repeat_std") is not None)
        lines.append(f"  means over {repeats} draws (seeds {result['seeds'][0]}.."
                     f"{result['seeds'][-1]}); std over draws: {spread}")
    lines += [f"  samples:   {result['samples']}", f"  reference: {result['ref']}",
              f"  extractor: {extractor.name}, {extractor.dims}-d features (weights "
              f"{extractor.weights_id}, resize {extractor.resize}, "
              f"{'TF32' if extractor.tf32 else 'full float32'})",
              f"wrote {out}"]
    print("\n".join(lines))
