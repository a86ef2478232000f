"""Steps: what an operation does on a node, one small class each (see
``provisioning.steps.base``). The operation kinds built from them are declared in
``provisioning.kinds``.
"""
