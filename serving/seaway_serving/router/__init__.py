"""``seaway-router``: Seaway's built-in traffic splitter (docs/router.md).

An HTTP reverse proxy in front of a ModelDeployment's revision Services, configured by the
routes document the operator writes into the ConfigMap ``<name>-router`` (docs/traffic.md).

Layers, from the wire down:

``main``      settings -> start-up -> serve -> drain; the ``seaway-router`` command
``sources``   the routes file and the ConfigMap feed; the one place documents are accepted
``kube``      list + watch of one ConfigMap over HTTPS (no kubernetes client)
``proxy``     the request handler on ``seaway_serving.httpserver``; own endpoints
``upstream``  keep-alive connection pools to the backends (asyncio + httptools)
``metrics``   Prometheus metrics per backend and revision
``bandit``    experiment state, Thompson sampling / epsilon-greedy, signed request ids
``split``     PURE: shares of traffic, weighted random and rendezvous (sticky) picks
``config``    PURE: the routes document (format v1), parsed and checked
"""
