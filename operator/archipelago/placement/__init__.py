"""Gang placement: which pending gangs run this cycle, where, and whom they preempt.

``plan`` holds the values a cycle reads and returns, ``fit`` the exact per-node card choice,
``greedy`` the fast placer that gives the solver its hint (and answers alone when time runs
out), ``model`` the CP-SAT pass, ``preempt`` the victim search, ``explain`` the reasons for
every wait and ``validate`` the solver-independent check of every plan.
"""
