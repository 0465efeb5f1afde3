"""KServe v2 on the wire, nothing of PyFlink: a request is tensors, parameters and headers
(``request``); ``http`` (over ``http1``'s connections) and ``grpc`` carry it; ``failures``
names model and endpoint in every error. Which transport a function uses is chosen above,
in ``sessions.connect``."""
