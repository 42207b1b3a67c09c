"""The controllers `netlab controller-manager` runs, one module each.

Every controller has the same two halves: pure functions that turn "what the cache shows" into
"what to do" (tested as units, with upstream's arithmetic and orderings), and a thin loop
(`base.Controller`: informer handlers feed a work queue, workers call `sync(key)`, failures
retry with back-off) that reads the shared informers and carries the actions out through the
apiserver. Garbage collection by ownerReferences is not here: the apiserver does it
(`netlab.cluster.gc`), so a deleted Deployment takes its ReplicaSets and pods with it even
when no controller-manager runs.
"""
