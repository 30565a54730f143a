"""The ``neurostim`` command line: the composition root.

Each package owns its subcommands (``register(subparsers)`` in its ``cli``
module); only this package may wire packages together, e.g. plug the
simulated device in behind ``sim://`` URLs for the controller.
"""
