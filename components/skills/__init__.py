"""Skill-lifecycle managers (role ``skill_manager``): SLIM's skill bank and CSP's subspace
of policies. Both are the ``skills`` service (:class:`~l2rl.core.SkillService`) that an
agent binds its policy module to."""
