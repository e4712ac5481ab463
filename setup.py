"""The packages of the wheel, discovered: every package under service/, plus profiles/ and mappings/ as data.

pyproject.toml holds everything else. A list written by hand once left service/security out of the wheel
(the editable install hid it); discovery cannot forget a package. profiles/ and mappings/ sit at the top
level (the brief fixes the layout) and ship as service.profiles and service.mappings ([tool.setuptools.
package-dir] in pyproject.toml), which discovery under service/ cannot see, so they are named here.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["service", "service.*"]), "service.profiles", "service.mappings"])
