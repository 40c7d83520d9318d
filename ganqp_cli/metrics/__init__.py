"""Evaluation of generators: FID, KID, precision/recall, density/coverage, Inception Score.

    stats            Stats: mean, covariance and features of one side; .npz files
    frechet, kid, prdc, inception_score
                     the metrics themselves, on NumPy arrays
    registry         the named metrics `fid.metrics` selects, their keys and directions
    resize           legacy (pytorch-fid) and clean (clean-fid) resizing
    extractor_base   the Extractor interface and its helpers (imports no other module here)
    inception, digits
                     the feature (and logit) extractors, on extractor_base
    extractors       the factory: fid.extractor -> an extractor (imports both)
    features         image sources and sharded extraction
    reference        cached reference statistics (rank 0 reads and writes the cache)
    evaluate         one generator or folder scored with the selected metrics, repeats
    validate         every fid.* key and `ganqp fid` argument, checked before any work
    monitor          FidMonitor: the metrics during training
    command          `ganqp fid`
"""
