_base_ = ['./student_fpn_r18.py', '../../_base_/nyu/depth_teacher_r101.py', '../../_base_/nyu/depth_methods/cwd.py']
