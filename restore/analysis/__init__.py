"""Analysis tools of the paper: feature-shift study (Fig. 3/4) and t-SNE (Fig. 5)."""
