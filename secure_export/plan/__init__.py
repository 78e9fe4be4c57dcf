"""``secure-export plan``: the Pulumi program evaluated offline, under Pulumi's mocks.

``run`` plans a stack file, ``offline`` is the mock engine it runs the program in, ``render`` turns
the result into the JSON contract or a tree, ``tool_side`` adds what a direct-mode ITSM tool's admin
enters, and ``cli`` is the command.
"""
