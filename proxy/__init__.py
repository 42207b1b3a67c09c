"""kube-proxy: one Services/Endpoints model and its data-plane modes."""
