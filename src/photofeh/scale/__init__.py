"""Prediction at scale: streamed, resumable runs over catalogues of 10^9 stars, and on Dask."""
