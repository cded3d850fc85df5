# AWS Application Load Balancer in front of Proxilion instances.
# Register targets (EC2 instances, ECS tasks or IPs) with aws_lb_target_group.proxilion,
# for example from an Auto Scaling group (target_group_arns) or the AWS Load
# Balancer Controller on EKS.
#
# Draining: the target group checks GET /health every 10 s; a draining Proxilion
# answers 503 and leaves after 3 checks. deregistration_delay (30 s) matches the
# time Proxilion gives in-flight requests and streams (DRAIN_GRACE + DRAIN_TIMEOUT).

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "vpc_id" {
  description = "VPC holding the load balancer and the Proxilion instances."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (at least two availability zones) for the load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener."
  type        = string
}

variable "allowed_cidr_blocks" {
  description = "Client networks allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

resource "aws_security_group" "alb" {
  name        = "proxilion-alb"
  description = "Proxilion load balancer"
  vpc_id      = var.vpc_id

  ingress {
    description = "HTTPS from clients"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidr_blocks
  }

  egress {
    description = "Proxy port of the Proxilion instances"
    from_port   = 8787
    to_port     = 8787
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_lb" "proxilion" {
  name               = "proxilion-alb"
  internal           = false
  load_balancer_type = "application"
  security_groups    = [aws_security_group.alb.id]
  subnets            = var.public_subnet_ids

  # Streamed answers may stay silent for a while; ALB's default is 60 s.
  idle_timeout = 300
}

resource "aws_lb_target_group" "proxilion" {
  name     = "proxilion-tg"
  port     = 8787
  protocol = "HTTP"
  vpc_id   = var.vpc_id

  deregistration_delay          = 30
  load_balancing_algorithm_type = "least_outstanding_requests"

  health_check {
    enabled             = true
    healthy_threshold   = 2
    interval            = 10
    matcher             = "200"
    path                = "/health"
    port                = "traffic-port"
    protocol            = "HTTP"
    timeout             = 5
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "proxilion" {
  load_balancer_arn = aws_lb.proxilion.arn
  port              = "443"
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.proxilion.arn
  }
}

output "alb_dns_name" {
  description = "Point proxy.example.com (CNAME or alias) here."
  value       = aws_lb.proxilion.dns_name
}

output "target_group_arn" {
  description = "Register Proxilion instances with this target group."
  value       = aws_lb_target_group.proxilion.arn
}
