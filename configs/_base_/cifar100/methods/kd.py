# KD: Hinton et al., "Distilling the Knowledge in a Neural Network", 2015.
# RepDistiller recipe: -r 0.1 -a 0.9 -b 0, T = 4.
task_weight = 0.1
distill = [dict(type='KD', T=4, weight=0.9)]
