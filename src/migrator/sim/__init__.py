"""An OpenStack API simulator served over real HTTP.

Each simulated cloud listens on its own loopback port and serves Keystone, Glance, Cinder,
Nova and Neutron under path prefixes (``/identity``, ``/image``, ``/volume``, ``/compute``,
``/network``), with the wire shapes and quirks of a profile (``liberty`` or ``modern``).
openstacksdk talks to it exactly as it would to a cloud. See docs/simulator.md.

The package imports nothing on its own: ``migrator.sim.server.SimServer`` is the entry point.
"""
