"""Export: a Design and a process become files a fab can make (GDSII/OASIS, STL, manifest).

``gds``       level maps → merged rectangles / pillar references → GDSII and OASIS (gdstk)
``drc``       design-rule summary of level maps against a process
``manifest``  the fab directory's ``manifest.json`` (files, checksums, level → structure table)
``fab``       orchestration: ``export_design(design, process, out_dir)``
``stl``       height maps → watertight STL solids (trimesh)

Exporters depend on :mod:`optodesign.design` and :mod:`optodesign.process` only, never on
torch modules.
"""
