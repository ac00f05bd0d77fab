"""core's ``runc`` executor driver (an example of an out-of-tree driver distribution).

Kept empty on purpose: the runtime helper imports ``core_runc_executor.helper`` with ``-I -S``
in every container start and exec, and must not pay for anything else."""
