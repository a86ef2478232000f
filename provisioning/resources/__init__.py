"""What a hosting customer uses on a node: DNS zones, certificates, databases, mail.

Each module builds what runs on the node (argument lists, or scripts assembled with
``shlex.quote`` from validated values) or talks to a node service's API; the provisioning
engine's SSH executor runs the scripts. Nothing here opens an SSH connection itself.
"""
