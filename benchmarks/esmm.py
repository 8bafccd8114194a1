"""Task chains (ESMM) on clicks and conversions with sample-selection bias.

``skmoe.datasets.make_click_conversion`` draws clicks and conversions that are seen
only after a click, with the conversion probability falling as the click score rises
(``selection_bias``). Two ``MultiGateMoE`` models see the same rows:

* ``plain``: conversion is a binary task with missing labels where there was no click,
  so its tower trains on the clicked rows only;
* ``chained``: ``task_chain={"conversion": "click"}``, so the conversion tower trains on
  every row through ``p(click) * p(conversion | click)`` (Ma et al., SIGIR 2018).

For each seed the script prints the conversion AUC on the clicked test rows, the AUC of
``p(click and conversion)`` on all test rows, and the correlation of the predicted
``p(conversion | click)`` with the true one over all test rows (the "entire space").

Usage::

    python benchmarks/esmm.py            # 3 seeds
    python benchmarks/esmm.py --quick    # tiny smoke run
"""

import argparse
import warnings

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--click-rate", type=float, default=0.05)
    parser.add_argument("--selection-bias", type=float, default=2.0)
    args = parser.parse_args(argv)
    n_samples, n_train, max_iter = 6000, 4000, 15
    if args.quick:
        args.seeds, n_samples, n_train, max_iter = 1, 1500, 1000, 2
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from skmoe import MultiGateMoE
    from skmoe.datasets import make_click_conversion

    warnings.filterwarnings("ignore")
    print(
        "| seed | model | conversion AUC (clicked rows) | joint AUC (all rows) "
        "| corr. with true p(conv given click) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for seed in range(args.seeds):
        X, Y, p_true = make_click_conversion(
            n_samples=n_samples,
            click_rate=args.click_rate,
            selection_bias=args.selection_bias,
            random_state=seed,
        )
        y = pd.DataFrame(Y, columns=["click", "conversion"])
        train, test = slice(0, n_train), slice(n_train, None)
        clicked = Y[test][:, 0] == 1
        joint = clicked & (Y[test][:, 1] == 1)
        for name, chain in (("plain", None), ("chained", {"conversion": "click"})):
            model = MultiGateMoE(
                max_iter=max_iter,
                allow_missing_labels=True,
                task_chain=chain,
                task_types="binary",
                learning_rate_init=1e-2,
                expert_hidden_layer_sizes=(16,),
                random_state=0,
                n_threads=1,
            ).fit(X[train], y[train])
            proba = model.predict_proba(X[test])
            conv = proba["conversion"][:, 1]
            cells = [
                roc_auc_score(Y[test][clicked, 1], conv[clicked]),
                roc_auc_score(joint, conv * proba["click"][:, 1]),
                np.corrcoef(conv, p_true[test])[0, 1],
            ]
            print(
                f"| {seed} | {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"
            )


if __name__ == "__main__":
    main()
