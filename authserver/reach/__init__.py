"""What a credential can reach: the route manifests resource servers register
(``resource_servers``), the endpoints an API key or client can call (``endpoints``), and the
narrowest scopes that reach chosen endpoints (``least_privilege``).

The scope rule is the guard's (``resource_demo.guard.scopes`` through ``authserver.scopes``):
a manifest's route lists the scopes its guard accepts (umbrellas already resolved when the
route was declared), and the guard lets a credential in when it holds any one of them.
"""
