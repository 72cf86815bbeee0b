"""Development and offline tools, outside the production packages (not in the image).

- ``recs_cli``: ``devconnect recs eval`` (the feed's evaluation on the MUSAE
  network) and ``recs precompute``;
- ``feed_evaluation``, ``feed_learn``: that evaluation and the weight fitting it
  reports;
- ``phonepe_simulator``: a local PhonePe provider speaking its HTTP protocol,
  which ``devconnect up`` and the tests start.
"""
