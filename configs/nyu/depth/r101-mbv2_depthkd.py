_base_ = ['./student_fpn_mbv2.py', '../../_base_/nyu/depth_teacher_r101.py', '../../_base_/nyu/depth_methods/depthkd.py']
