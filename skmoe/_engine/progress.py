"""A per-epoch progress bar with the running loss, drawn by tqdm."""

from tqdm.auto import tqdm


class EpochProgress:
    """Context manager showing epochs done, loss and validation score when verbose."""

    def __init__(self, max_epochs, verbose):
        self.bar = None
        if verbose:
            self.bar = tqdm(total=max_epochs, unit="epoch", leave=True)

    def update(self, history):
        if self.bar is None:
            return
        postfix = {"loss": f"{history.loss_curve[-1]:.4g}"}
        if history.validation_scores:
            postfix["val_score"] = f"{history.validation_scores[-1]:.4g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self.bar is not None:
            if exc_type is None and self.bar.n < self.bar.total:
                # Training stopped early: the epochs run are all there will be, so
                # the bar ends full at that epoch rather than short of max_epochs.
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
        return False
