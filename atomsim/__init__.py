"""atomsim: what a video-language pipeline schedule costs on a phone, before you build it.

Layers (see DESIGN.md): schema -> plan -> sim (never torch) ; models -> profile, run ;
validate, report on top. Importing atomsim changes nothing in the process: the settings of a
process that measures or runs (huge pages for torch, glibc's malloc arenas and mmap threshold)
are `atomsim.process.pin_measurement_process()`, which the entry points call.
"""
__version__ = "0.1.0"
