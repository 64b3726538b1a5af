"""atomsim: what a video-language pipeline schedule costs on a phone, before you build it.

Layers (see DESIGN.md): schema -> plan -> sim (never torch) ; models -> profile, run ;
validate, report on top.
"""
__version__ = "0.1.0"
